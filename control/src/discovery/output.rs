//! How `telegen discover` shows its findings: aligned tables for people, one JSON document for
//! machines. Attribute lists become JSON objects keyed by attribute name.

use serde_json::{json, Map, Value};
use telegen_dataplane::signal::{AttrValue, Attrs};

use super::services::DiscoveredService;
use super::util::{attr_str, value_text};

/// Everything `telegen discover` found.
#[derive(Debug, Clone)]
pub struct Report {
    pub host: Attrs,
    pub processes: Vec<(u32, Attrs)>,
    pub services: Vec<DiscoveredService>,
}

/// An attribute list as a JSON object.
pub fn attrs_json(a: &Attrs) -> Value {
    let mut m = Map::new();
    for (k, v) in a {
        let v = match v {
            AttrValue::Str(s) => Value::String(s.clone()),
            AttrValue::Text(s) => Value::String(s.to_string()),
            AttrValue::Int(i) => json!(i),
            AttrValue::Bool(b) => json!(b),
            AttrValue::Double(d) => json!(d),
        };
        m.insert((*k).to_string(), v);
    }
    Value::Object(m)
}

fn table(header: &[&str], rows: &[Vec<String>]) -> String {
    let mut w: Vec<usize> = header.iter().map(|h| h.len()).collect();
    for r in rows {
        for (i, c) in r.iter().enumerate() {
            w[i] = w[i].max(c.chars().count());
        }
    }
    let line = |cells: Vec<String>| {
        let mut s = String::new();
        for (i, c) in cells.iter().enumerate() {
            if i + 1 == cells.len() {
                s.push_str(c);
            } else {
                s.push_str(&format!("{c:<width$}  ", width = w[i]));
            }
        }
        s.trim_end().to_string() + "\n"
    };
    let mut out = line(header.iter().map(|h| h.to_string()).collect());
    for r in rows {
        out.push_str(&line(r.clone()));
    }
    out
}

fn short(s: &str, n: usize) -> String {
    if s.chars().count() <= n {
        s.to_string()
    } else {
        s.chars().take(n).collect()
    }
}

impl Report {
    pub fn to_json(&self) -> Value {
        json!({
            "host": attrs_json(&self.host),
            "processes": self.processes.iter().map(|(pid, a)| json!({
                "pid": pid,
                "attributes": attrs_json(a),
            })).collect::<Vec<_>>(),
            "services": self.services.iter().map(|s| {
                let mut v = serde_json::to_value(s).unwrap_or(Value::Null);
                if let Value::Object(m) = &mut v {
                    m.insert("attributes".into(), attrs_json(&s.attrs()));
                }
                v
            }).collect::<Vec<_>>(),
        })
    }

    pub fn to_table(&self) -> String {
        let mut out = String::from("HOST\n");
        let rows: Vec<Vec<String>> = self
            .host
            .iter()
            .map(|(k, v)| vec![k.to_string(), value_text(v)])
            .collect();
        out.push_str(&table(&["ATTRIBUTE", "VALUE"], &rows));
        out.push_str("\nPROCESSES\n");
        let g = |a: &Attrs, k: &str| attr_str(a, k).unwrap_or("-").to_string();
        let rows: Vec<Vec<String>> = self
            .processes
            .iter()
            .map(|(pid, a)| {
                vec![
                    pid.to_string(),
                    g(a, "service.name"),
                    g(a, "process.runtime.name"),
                    g(a, "process.runtime.version"),
                    g(a, "telegen.tls.library"),
                    short(&g(a, "container.id"), 12),
                    g(a, "k8s.pod.name"),
                    g(a, "process.executable.path"),
                ]
            })
            .collect();
        out.push_str(&table(
            &[
                "PID",
                "SERVICE",
                "RUNTIME",
                "VERSION",
                "TLS",
                "CONTAINER",
                "POD",
                "EXECUTABLE",
            ],
            &rows,
        ));
        out.push_str("\nSERVICES\n");
        let rows: Vec<Vec<String>> = self
            .services
            .iter()
            .map(|s| {
                vec![
                    s.pid.to_string(),
                    s.system.to_string(),
                    format!("{:?}", s.kind).to_lowercase(),
                    s.listen
                        .iter()
                        .map(|a| a.to_string())
                        .collect::<Vec<_>>()
                        .join(","),
                    s.executable.clone(),
                ]
            })
            .collect();
        out.push_str(&table(
            &["PID", "SYSTEM", "KIND", "LISTEN", "EXECUTABLE"],
            &rows,
        ));
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::discovery::services::{MatchedBy, ServiceKind};

    #[test]
    fn table_and_json() {
        let r = Report {
            host: vec![
                ("host.name", AttrValue::Str("h1".into())),
                ("telegen.host.vm", AttrValue::Bool(true)),
            ],
            processes: vec![(
                7,
                vec![
                    ("process.pid", AttrValue::Int(7)),
                    ("service.name", AttrValue::Str("api".into())),
                    ("process.runtime.name", AttrValue::Str("go".into())),
                ],
            )],
            services: vec![DiscoveredService {
                pid: 9,
                executable: "redis-server".into(),
                kind: ServiceKind::Database,
                system: "redis",
                listen: vec!["127.0.0.1:6379".parse().unwrap()],
                matched_by: MatchedBy::Executable,
            }],
        };
        let t = r.to_table();
        assert!(
            t.lines()
                .any(|l| l.starts_with("host.name ") && l.ends_with(" h1")),
            "{t}"
        );
        assert!(
            t.lines()
                .any(|l| l.starts_with("7 ") && l.contains("api") && l.contains("go")),
            "{t}"
        );
        assert!(t.contains("redis"));
        let j = r.to_json();
        assert_eq!(j["host"]["host.name"], "h1");
        assert_eq!(j["host"]["telegen.host.vm"], true);
        assert_eq!(j["processes"][0]["attributes"]["service.name"], "api");
        assert_eq!(j["services"][0]["system"], "redis");
        assert_eq!(j["services"][0]["attributes"]["server.port"], 6379);
    }
}
