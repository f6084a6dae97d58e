//! Databases and message brokers running on the host: processes that hold listening TCP sockets,
//! classified first by executable (and, for JVM/BEAM servers, by command line), then by
//! well-known port. Sockets are tied to processes through `/proc/<pid>/fd` socket inodes and the
//! per-network-namespace `/proc/<pid>/net/tcp{,6}` tables (read once per namespace), so services in
//! containers are found too.

use std::collections::{BTreeMap, HashMap};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::Path;

use serde::Serialize;
use telegen_dataplane::signal::{AttrValue, Attrs};

use super::process::ProcInfo;
use super::util::push_str;

/// Whether a service is a database or a messaging system.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ServiceKind {
    Database,
    Messaging,
}

/// How the classification was made.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum MatchedBy {
    Executable,
    Port,
}

/// One database or broker found listening on the host.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DiscoveredService {
    pub pid: u32,
    pub executable: String,
    pub kind: ServiceKind,
    /// The `db.system.name` or `messaging.system` value.
    pub system: &'static str,
    pub listen: Vec<SocketAddr>,
    pub matched_by: MatchedBy,
}

impl DiscoveredService {
    pub fn attrs(&self) -> Attrs {
        let mut a: Attrs = vec![("process.pid", AttrValue::Int(self.pid as i64))];
        match self.kind {
            ServiceKind::Database => push_str(&mut a, "db.system.name", self.system),
            ServiceKind::Messaging => push_str(&mut a, "messaging.system", self.system),
        }
        if let Some(first) = self.listen.first() {
            push_str(&mut a, "server.address", first.ip().to_string());
            a.push(("server.port", AttrValue::Int(first.port() as i64)));
        }
        a
    }
}

use ServiceKind::{Database as Db, Messaging as Mq};

/// Classifies by executable name and command line.
pub fn classify_exe(exe: &str, cmdline: &[String]) -> Option<(ServiceKind, &'static str)> {
    let by_name = match exe {
        "postgres" | "postmaster" => Some((Db, "postgresql")),
        "mysqld" => Some((Db, "mysql")),
        "mariadbd" => Some((Db, "mariadb")),
        "redis-server" | "valkey-server" | "keydb-server" => Some((Db, "redis")),
        "mongod" | "mongos" => Some((Db, "mongodb")),
        "memcached" => Some((Db, "memcached")),
        "clickhouse-server" | "clickhouse" => Some((Db, "clickhouse")),
        "nats-server" | "gnatsd" => Some((Mq, "nats")),
        "mosquitto" => Some((Mq, "mqtt")),
        _ => None,
    };
    if by_name.is_some() {
        return by_name;
    }
    let joined = cmdline.join(" ");
    let has = |s: &str| joined.contains(s);
    if exe == "java" || exe.starts_with("java") {
        if has("kafka.Kafka") || has("io.confluent.kafka") {
            return Some((Mq, "kafka"));
        }
        if has("org.elasticsearch.bootstrap") || has("org.elasticsearch.server") {
            return Some((Db, "elasticsearch"));
        }
        if has("org.opensearch.bootstrap") {
            return Some((Db, "opensearch"));
        }
        if has("org.apache.cassandra.service.CassandraDaemon") {
            return Some((Db, "cassandra"));
        }
        if has("org.apache.activemq") {
            return Some((Mq, "activemq"));
        }
        if has("org.apache.pulsar") {
            return Some((Mq, "pulsar"));
        }
        if has("org.apache.rocketmq") {
            return Some((Mq, "rocketmq"));
        }
    }
    if exe == "beam.smp" && (has("rabbit") || has("rabbitmq")) {
        return Some((Mq, "rabbitmq"));
    }
    if exe == "mysqld_safe" {
        return None;
    }
    None
}

/// Classifies by a well-known listening port, for executables we don't recognise.
pub fn classify_port(port: u16) -> Option<(ServiceKind, &'static str)> {
    Some(match port {
        5432 => (Db, "postgresql"),
        3306 => (Db, "mysql"),
        6379 => (Db, "redis"),
        27017 => (Db, "mongodb"),
        11211 => (Db, "memcached"),
        9200 => (Db, "elasticsearch"),
        9042 => (Db, "cassandra"),
        8123 => (Db, "clickhouse"),
        9092 => (Mq, "kafka"),
        5672 => (Mq, "rabbitmq"),
        4222 => (Mq, "nats"),
        1883 => (Mq, "mqtt"),
        61616 => (Mq, "activemq"),
        6650 => (Mq, "pulsar"),
        _ => return None,
    })
}

/// Parses `/proc/net/tcp` or `tcp6` text into listening sockets: inode -> address.
pub fn parse_listening(text: &str) -> HashMap<u64, SocketAddr> {
    let mut out = HashMap::new();
    for line in text.lines().skip(1) {
        let f: Vec<&str> = line.split_whitespace().collect();
        if f.len() < 10 || f[3] != "0A" {
            continue;
        }
        let (Some(addr), Ok(inode)) = (parse_hex_addr(f[1]), f[9].parse::<u64>()) else {
            continue;
        };
        if inode != 0 {
            out.insert(inode, addr);
        }
    }
    out
}

fn parse_hex_addr(s: &str) -> Option<SocketAddr> {
    let (ip, port) = s.split_once(':')?;
    let port = u16::from_str_radix(port, 16).ok()?;
    let ip = match ip.len() {
        8 => IpAddr::V4(Ipv4Addr::from(
            u32::from_str_radix(ip, 16).ok()?.to_ne_bytes(),
        )),
        32 => {
            let mut b = [0u8; 16];
            for i in 0..4 {
                let w = u32::from_str_radix(&ip[i * 8..i * 8 + 8], 16).ok()?;
                b[i * 4..i * 4 + 4].copy_from_slice(&w.to_ne_bytes());
            }
            IpAddr::V6(Ipv6Addr::from(b))
        }
        _ => return None,
    };
    Some(SocketAddr::new(ip, port))
}

fn socket_inodes(proc_root: &Path, pid: u32) -> Vec<u64> {
    let Ok(rd) = std::fs::read_dir(proc_root.join(pid.to_string()).join("fd")) else {
        return Vec::new();
    };
    rd.filter_map(|e| {
        let l = std::fs::read_link(e.ok()?.path()).ok()?;
        let s = l.to_str()?;
        s.strip_prefix("socket:[")?.strip_suffix(']')?.parse().ok()
    })
    .collect()
}

/// All numeric pids under `proc_root`.
pub fn pids(proc_root: &Path) -> Vec<u32> {
    let mut v: Vec<u32> = std::fs::read_dir(proc_root)
        .map(|rd| {
            rd.filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
                .collect()
        })
        .unwrap_or_default();
    v.sort_unstable();
    v
}

/// Scans every process (or only `only`, when not empty) for listening databases and brokers.
pub fn discover(proc_root: &Path, etc_root: &Path, only: &[u32]) -> Vec<DiscoveredService> {
    let mut tables: BTreeMap<String, HashMap<u64, SocketAddr>> = BTreeMap::new();
    let mut out = Vec::new();
    let all = if only.is_empty() {
        pids(proc_root)
    } else {
        only.to_vec()
    };
    for pid in all {
        let inodes = socket_inodes(proc_root, pid);
        if inodes.is_empty() {
            continue;
        }
        let dir = proc_root.join(pid.to_string());
        let ns = std::fs::read_link(dir.join("ns/net"))
            .map(|p| p.to_string_lossy().into_owned())
            .unwrap_or_else(|_| format!("pid:{pid}"));
        let table = tables.entry(ns).or_insert_with(|| {
            let mut t = HashMap::new();
            for f in ["net/tcp", "net/tcp6"] {
                if let Ok(text) = std::fs::read_to_string(dir.join(f)) {
                    t.extend(parse_listening(&text));
                }
            }
            t
        });
        let mut listen: Vec<SocketAddr> = inodes
            .iter()
            .filter_map(|i| table.get(i).copied())
            .collect();
        if listen.is_empty() {
            continue;
        }
        listen.sort();
        listen.dedup();
        let Ok(p) = ProcInfo::read(proc_root, etc_root, pid) else {
            continue; // exited meanwhile
        };
        let exe = p.name();
        let found = p
            .names()
            .iter()
            .find_map(|n| classify_exe(n, &p.cmdline))
            .map(|c| (c, MatchedBy::Executable))
            .or_else(|| {
                listen
                    .iter()
                    .find_map(|a| classify_port(a.port()))
                    .map(|c| (c, MatchedBy::Port))
            });
        if let Some(((kind, system), matched_by)) = found {
            out.push(DiscoveredService {
                pid,
                executable: exe,
                kind,
                system,
                listen,
                matched_by,
            });
        }
    }
    // A server's worker processes share its sockets: keep the lowest pid per (system, address).
    out.sort_by_key(|s| s.pid);
    let mut seen = Vec::new();
    out.retain(|s| {
        let key = (s.system, s.listen.clone());
        if seen.contains(&key) {
            false
        } else {
            seen.push(key);
            true
        }
    });
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proc_net_tcp_listeners() {
        let t = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n   0: 0100007F:18EB 00000000:0000 0A 00000000:00000000 00:00000000 00000000   107        0 31337 1 0000000000000000 100 0 0 10 0\n   1: 0100007F:A1B2 0100007F:18EB 01 00000000:00000000 00:00000000 00000000     0        0 4242 1 0000000000000000 20 4 30 10 -1\n";
        let m = parse_listening(t);
        assert_eq!(m.len(), 1);
        assert_eq!(m[&31337], "127.0.0.1:6379".parse().unwrap());
        let t6 = "  sl  local_address                         remote_address                        st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n   0: 00000000000000000000000001000000:1538 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000   107        0 777 1 0000000000000000 100 0 0 10 0\n";
        let m = parse_listening(t6);
        assert_eq!(m[&777], "[::1]:5432".parse().unwrap());
    }

    #[test]
    fn classification() {
        let none: Vec<String> = vec![];
        assert_eq!(classify_exe("postgres", &none), Some((Db, "postgresql")));
        assert_eq!(classify_exe("mariadbd", &none), Some((Db, "mariadb")));
        assert_eq!(classify_exe("redis-server", &none), Some((Db, "redis")));
        assert_eq!(classify_exe("mosquitto", &none), Some((Mq, "mqtt")));
        let kafka: Vec<String> = ["java", "-Xmx1G", "kafka.Kafka", "server.properties"]
            .map(String::from)
            .to_vec();
        assert_eq!(classify_exe("java", &kafka), Some((Mq, "kafka")));
        let es: Vec<String> = ["java", "org.elasticsearch.bootstrap.Elasticsearch"]
            .map(String::from)
            .to_vec();
        assert_eq!(classify_exe("java", &es), Some((Db, "elasticsearch")));
        let rmq: Vec<String> = [
            "beam.smp",
            "--",
            "-root",
            "/usr/lib/erlang",
            "-s",
            "rabbit",
            "boot",
        ]
        .map(String::from)
        .to_vec();
        assert_eq!(classify_exe("beam.smp", &rmq), Some((Mq, "rabbitmq")));
        assert_eq!(classify_exe("java", &none), None);
        assert_eq!(classify_port(27017), Some((Db, "mongodb")));
        assert_eq!(classify_port(8080), None);
    }

    #[test]
    fn attrs_of_service() {
        let s = DiscoveredService {
            pid: 7,
            executable: "redis-server".into(),
            kind: Db,
            system: "redis",
            listen: vec!["127.0.0.1:6379".parse().unwrap()],
            matched_by: MatchedBy::Executable,
        };
        let a = s.attrs();
        assert!(a.contains(&("db.system.name", AttrValue::Str("redis".into()))));
        assert!(a.contains(&("server.port", AttrValue::Int(6379))));
    }
}
