//! Kubernetes: finds the API server (a kubeconfig given on the command line, or the in-cluster
//! service account), lists the pods (of this node when its name is known), and turns a pod uid
//! from the cgroup into pod, namespace, node, container and owner names (ReplicaSet → Deployment,
//! Job → CronJob, StatefulSet, DaemonSet), plus the pod's labels and annotations for naming.
//! A plain `http://` server (e.g. `kubectl proxy`) is spoken to with the small built-in client;
//! an `https://` server (in-cluster, or a kubeconfig with a CA) through `ureq` with rustls,
//! trusting only the configured CA when one is given.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::Value;
use telegen_dataplane::signal::Attrs;

use super::http;
use super::util::{push_str, read_trim, warn_once, DiscoveryError};

/// Where the API server is and how to authenticate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiConfig {
    pub server: String,
    pub token: Option<String>,
    pub namespace: Option<String>,
    /// PEM certificates to trust for an `https://` server (none: the public web PKI roots).
    pub ca_pem: Option<Vec<u8>>,
}

/// A minimal reader for kubeconfig files: JSON, or the YAML layout kubectl writes (lists of
/// `name:` items under `clusters:`, `contexts:` and `users:`, and `current-context:`).
pub fn parse_kubeconfig(text: &str) -> Result<ApiConfig, DiscoveryError> {
    let bad = |r: &str| DiscoveryError::parse("kubeconfig", r);
    let (sections, current) = if text.trim_start().starts_with('{') {
        from_json(text).ok_or_else(|| bad("invalid JSON"))?
    } else {
        from_yaml(text)
    };
    let pick = |sec: &str, name: &str| {
        sections.get(sec).and_then(|items| {
            items
                .iter()
                .find(|m| m.get("name").map(String::as_str) == Some(name))
        })
    };
    let (cluster_name, user_name, namespace) =
        match current.as_deref().and_then(|c| pick("contexts", c)) {
            Some(ctx) => (
                ctx.get("cluster").cloned(),
                ctx.get("user").cloned(),
                ctx.get("namespace").cloned(),
            ),
            None => (None, None, None),
        };
    let cluster = match &cluster_name {
        Some(n) => pick("clusters", n),
        None => sections.get("clusters").and_then(|c| c.first()),
    }
    .ok_or_else(|| bad("no cluster for the current context"))?;
    let server = cluster
        .get("server")
        .cloned()
        .ok_or_else(|| bad("cluster has no server"))?;
    let user = user_name.as_deref().and_then(|u| pick("users", u));
    let token = user.and_then(|u| u.get("token").cloned()).or_else(|| {
        user.and_then(|u| u.get("tokenFile").or_else(|| u.get("token-file")))
            .and_then(|f| read_trim(Path::new(f)))
    });
    let ca_pem = match (
        cluster.get("certificate-authority-data"),
        cluster.get("certificate-authority"),
    ) {
        (Some(b64), _) => {
            Some(base64_decode(b64).ok_or_else(|| bad("bad certificate-authority-data"))?)
        }
        (None, Some(path)) => Some(std::fs::read(path).map_err(|source| DiscoveryError::Io {
            path: path.into(),
            source,
        })?),
        (None, None) => None,
    };
    Ok(ApiConfig {
        server: server.trim_end_matches('/').to_string(),
        token,
        namespace,
        ca_pem,
    })
}

/// Decodes standard base64 (padding optional, whitespace ignored).
pub fn base64_decode(s: &str) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(s.len() * 3 / 4);
    let (mut acc, mut bits) = (0u32, 0u32);
    for c in s.bytes().filter(|c| !c.is_ascii_whitespace() && *c != b'=') {
        let v = match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' | b'-' => 62,
            b'/' | b'_' => 63,
            _ => return None,
        } as u32;
        acc = (acc << 6) | v;
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
            acc &= (1 << bits) - 1;
        }
    }
    Some(out)
}

type Sections = HashMap<String, Vec<HashMap<String, String>>>;

fn unquote(v: &str) -> String {
    let v = v.trim();
    v.strip_prefix('"')
        .and_then(|x| x.strip_suffix('"'))
        .or_else(|| v.strip_prefix('\'').and_then(|x| x.strip_suffix('\'')))
        .unwrap_or(v)
        .to_string()
}

fn from_yaml(text: &str) -> (Sections, Option<String>) {
    let mut sections: Sections = HashMap::new();
    let mut current = None;
    let mut section: Option<String> = None;
    for raw in text.lines() {
        let line = raw.split(" #").next().unwrap_or("").trim_end();
        if line.trim().is_empty() || line.trim_start().starts_with('#') {
            continue;
        }
        let indent = line.len() - line.trim_start().len();
        let body = line.trim_start();
        if indent == 0 && !body.starts_with("- ") {
            let Some((k, v)) = body.split_once(':') else {
                continue;
            };
            if k == "current-context" {
                current = Some(unquote(v));
            }
            section = matches!(k, "clusters" | "contexts" | "users").then(|| k.to_string());
            continue;
        }
        let Some(sec) = &section else { continue };
        let items = sections.entry(sec.clone()).or_default();
        let body = if let Some(rest) = body.strip_prefix("- ") {
            items.push(HashMap::new());
            rest
        } else {
            body
        };
        if let (Some(item), Some((k, v))) = (items.last_mut(), body.split_once(':')) {
            let v = unquote(v);
            if !v.is_empty() {
                item.entry(k.trim().to_string()).or_insert(v);
            }
        }
    }
    (sections, current)
}

fn from_json(text: &str) -> Option<(Sections, Option<String>)> {
    let v: Value = serde_json::from_str(text).ok()?;
    let mut sections: Sections = HashMap::new();
    for (sec, inner) in [
        ("clusters", "cluster"),
        ("contexts", "context"),
        ("users", "user"),
    ] {
        let items = v
            .get(sec)
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        for it in items {
            let mut m = HashMap::new();
            if let Some(n) = it.get("name").and_then(Value::as_str) {
                m.insert("name".to_string(), n.to_string());
            }
            if let Some(obj) = it.get(inner).and_then(Value::as_object) {
                for (k, val) in obj {
                    if let Some(s) = val.as_str() {
                        m.insert(k.clone(), s.to_string());
                    }
                }
            }
            sections.entry(sec.to_string()).or_default().push(m);
        }
    }
    let current = v
        .get("current-context")
        .and_then(Value::as_str)
        .map(str::to_string);
    Some((sections, current))
}

/// The in-cluster configuration, when running in a pod with a service account
/// (`KUBERNETES_SERVICE_HOST` / `KUBERNETES_SERVICE_PORT` set).
pub fn in_cluster(sa_dir: &Path) -> Option<ApiConfig> {
    let host = std::env::var("KUBERNETES_SERVICE_HOST").ok()?;
    let port = std::env::var("KUBERNETES_SERVICE_PORT").unwrap_or_else(|_| "443".into());
    Some(in_cluster_at(&host, &port, sa_dir))
}

/// The in-cluster configuration for an API server at `host:port`, with the token, namespace and
/// CA certificate from the service account directory.
pub fn in_cluster_at(host: &str, port: &str, sa_dir: &Path) -> ApiConfig {
    let host = if host.contains(':') {
        format!("[{host}]")
    } else {
        host.to_string()
    };
    ApiConfig {
        server: format!("https://{host}:{port}"),
        token: read_trim(&sa_dir.join("token")),
        namespace: read_trim(&sa_dir.join("namespace")),
        ca_pem: std::fs::read(sa_dir.join("ca.crt")).ok(),
    }
}

/// A pod as far as resource attributes care.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PodMeta {
    pub uid: String,
    pub name: String,
    pub namespace: String,
    pub node_name: String,
    pub labels: BTreeMap<String, String>,
    pub annotations: BTreeMap<String, String>,
    /// Owner kind -> name, after following ReplicaSet and Job owners.
    pub owners: BTreeMap<String, String>,
    /// (container name, container id without the runtime scheme, image).
    pub containers: Vec<(String, String, String)>,
}

impl PodMeta {
    /// The container name and image for a container id (or the only container).
    pub fn container(&self, id: Option<&str>, name: Option<&str>) -> Option<(&str, &str)> {
        let found = self.containers.iter().find(|(n, cid, _)| {
            id.is_some_and(|i| !cid.is_empty() && cid == i) || name.is_some_and(|x| x == n)
        });
        let found = found.or_else(|| (self.containers.len() == 1).then(|| &self.containers[0]));
        found.map(|(n, _, img)| (n.as_str(), img.as_str()))
    }

    pub fn attrs(&self, container_id: Option<&str>, container_name: Option<&str>) -> Attrs {
        let mut a = Attrs::new();
        push_str(&mut a, "k8s.pod.name", &self.name);
        push_str(&mut a, "k8s.pod.uid", &self.uid);
        push_str(&mut a, "k8s.namespace.name", &self.namespace);
        push_str(&mut a, "k8s.node.name", &self.node_name);
        if let Some((n, image)) = self.container(container_id, container_name) {
            push_str(&mut a, "k8s.container.name", n);
            let (name, tag) = split_image(image);
            push_str(&mut a, "container.image.name", name);
            push_str(&mut a, "container.image.tag", tag);
        }
        for (kind, key) in OWNER_KEYS {
            if let Some(n) = self.owners.get(*kind) {
                push_str(&mut a, key, n);
            }
        }
        a
    }
}

/// Owner kinds and their attribute keys.
pub const OWNER_KEYS: &[(&str, &str)] = &[
    ("ReplicaSet", "k8s.replicaset.name"),
    ("Deployment", "k8s.deployment.name"),
    ("StatefulSet", "k8s.statefulset.name"),
    ("DaemonSet", "k8s.daemonset.name"),
    ("Job", "k8s.job.name"),
    ("CronJob", "k8s.cronjob.name"),
];

/// `registry:5000/team/app:1.2@sha256:..` -> (`registry:5000/team/app`, `1.2`).
pub fn split_image(image: &str) -> (String, String) {
    let image = image.split('@').next().unwrap_or(image);
    let last_slash = image.rfind('/').map(|i| i + 1).unwrap_or(0);
    match image[last_slash..].rfind(':') {
        Some(i) => (
            image[..last_slash + i].to_string(),
            image[last_slash + i + 1..].to_string(),
        ),
        None => (image.to_string(), String::new()),
    }
}

fn str_map(v: Option<&Value>) -> BTreeMap<String, String> {
    v.and_then(Value::as_object)
        .map(|o| {
            o.iter()
                .filter_map(|(k, v)| Some((k.clone(), v.as_str()?.to_string())))
                .collect()
        })
        .unwrap_or_default()
}

fn owner_ref(meta: &Value) -> Option<(String, String)> {
    let refs = meta.get("ownerReferences")?.as_array()?;
    let r = refs
        .iter()
        .find(|r| r.get("controller").and_then(Value::as_bool) == Some(true))
        .or_else(|| refs.first())?;
    Some((
        r.get("kind")?.as_str()?.to_string(),
        r.get("name")?.as_str()?.to_string(),
    ))
}

/// Parses one pod object (owners not yet followed).
pub fn parse_pod(p: &Value) -> Option<PodMeta> {
    let meta = p.get("metadata")?;
    let s = |v: &Value, k: &str| v.get(k).and_then(Value::as_str).unwrap_or("").to_string();
    let mut pod = PodMeta {
        uid: s(meta, "uid"),
        name: s(meta, "name"),
        namespace: s(meta, "namespace"),
        node_name: p
            .get("spec")
            .map(|sp| s(sp, "nodeName"))
            .unwrap_or_default(),
        labels: str_map(meta.get("labels")),
        annotations: str_map(meta.get("annotations")),
        ..Default::default()
    };
    if pod.uid.is_empty() {
        return None;
    }
    if let Some((k, n)) = owner_ref(meta) {
        pod.owners.insert(k, n);
    }
    let spec_images: HashMap<String, String> = p
        .pointer("/spec/containers")
        .and_then(Value::as_array)
        .map(|cs| cs.iter().map(|c| (s(c, "name"), s(c, "image"))).collect())
        .unwrap_or_default();
    let statuses = p
        .pointer("/status/containerStatuses")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    for c in &statuses {
        let name = s(c, "name");
        let id = s(c, "containerID");
        let id = id
            .split_once("://")
            .map(|(_, i)| i.to_string())
            .unwrap_or(id);
        let image = spec_images
            .get(&name)
            .cloned()
            .unwrap_or_else(|| s(c, "image"));
        pod.containers.push((name, id, image));
    }
    for (name, image) in spec_images {
        if !pod.containers.iter().any(|(n, _, _)| *n == name) {
            pod.containers.push((name, String::new(), image));
        }
    }
    Some(pod)
}

/// A small Kubernetes API client with a pod index keyed by uid.
pub struct K8sClient {
    cfg: ApiConfig,
    /// The TLS client for an `https://` server.
    tls: Option<ureq::Agent>,
    node_name: Option<String>,
    timeout: Duration,
    pods: HashMap<String, PodMeta>,
    owners: HashMap<(String, String, String), Option<(String, String)>>,
    last_list: Option<Instant>,
    min_relist: Duration,
}

impl K8sClient {
    /// A client for `cfg`, or `None` (with a warning) when the server cannot be spoken to.
    pub fn new(cfg: ApiConfig, node_name: Option<String>, timeout: Duration) -> Option<K8sClient> {
        let tls = if cfg.server.starts_with("https://") {
            match tls_agent(cfg.ca_pem.as_deref(), timeout) {
                Ok(a) => Some(a),
                Err(e) => {
                    warn_once(
                        "k8s:tls",
                        format!("Kubernetes API at {}: {e}; pod names are left out, cgroup data is still attached", cfg.server),
                    );
                    return None;
                }
            }
        } else if cfg.server.starts_with("http://") {
            None
        } else {
            warn_once(
                "k8s:scheme",
                format!(
                    "Kubernetes API server {:?} is not an http(s) URL",
                    cfg.server
                ),
            );
            return None;
        };
        Some(K8sClient {
            cfg,
            tls,
            node_name,
            timeout,
            pods: HashMap::new(),
            owners: HashMap::new(),
            last_list: None,
            min_relist: Duration::from_secs(5),
        })
    }

    pub fn server(&self) -> &str {
        &self.cfg.server
    }

    fn get(&self, path: &str) -> Result<Value, DiscoveryError> {
        let url = format!("{}{}", self.cfg.server, path);
        let auth = self.cfg.token.as_ref().map(|t| format!("Bearer {t}"));
        let mut h = vec![("Accept", "application/json")];
        if let Some(a) = &auth {
            h.push(("Authorization", a.as_str()));
        }
        let (status, body) = match &self.tls {
            Some(agent) => {
                let herr = |e: ureq::Error| DiscoveryError::Http {
                    url: url.clone(),
                    reason: e.to_string(),
                };
                let mut req = agent.get(&url);
                for (k, v) in &h {
                    req = req.header(*k, *v);
                }
                let mut resp = req.call().map_err(herr)?;
                let status = resp.status().as_u16();
                let body = resp
                    .body_mut()
                    .with_config()
                    .limit(32 << 20)
                    .read_to_vec()
                    .map_err(herr)?;
                (status, body)
            }
            None => {
                let r = http::request("GET", &url, &h, self.timeout)?;
                (r.status, r.body)
            }
        };
        if !(200..300).contains(&status) {
            return Err(DiscoveryError::Http {
                url,
                reason: format!("status {status}"),
            });
        }
        serde_json::from_slice(&body).map_err(|e| DiscoveryError::parse(url, e.to_string()))
    }

    /// Re-reads the pod list (of this node when known).
    pub fn refresh(&mut self) -> Result<(), DiscoveryError> {
        self.last_list = Some(Instant::now());
        let path = match &self.node_name {
            Some(n) => format!("/api/v1/pods?fieldSelector=spec.nodeName%3D{n}"),
            None => "/api/v1/pods".to_string(),
        };
        let v = self.get(&path)?;
        let items = v
            .get("items")
            .and_then(Value::as_array)
            .ok_or_else(|| DiscoveryError::parse("pod list", "no items"))?;
        let mut pods = HashMap::new();
        for it in items {
            if let Some(mut p) = parse_pod(it) {
                self.follow_owners(&mut p);
                pods.insert(p.uid.clone(), p);
            }
        }
        self.pods = pods;
        Ok(())
    }

    fn follow_owners(&mut self, p: &mut PodMeta) {
        for (kind, api) in [
            ("ReplicaSet", "apps/v1/namespaces/{ns}/replicasets"),
            ("Job", "batch/v1/namespaces/{ns}/jobs"),
        ] {
            let Some(name) = p.owners.get(kind).cloned() else {
                continue;
            };
            let key = (p.namespace.clone(), kind.to_string(), name.clone());
            if !self.owners.contains_key(&key) {
                let path = format!("/apis/{}/{}", api.replace("{ns}", &p.namespace), name);
                let owner = match self.get(&path) {
                    Ok(v) => v.get("metadata").and_then(owner_ref),
                    Err(e) => {
                        warn_once(
                            &format!("k8s:owner:{kind}"),
                            format!("cannot read {kind} owner: {e}"),
                        );
                        None
                    }
                };
                self.owners.insert(key.clone(), owner);
            }
            if let Some(Some((k, n))) = self.owners.get(&key) {
                p.owners.insert(k.clone(), n.clone());
            }
        }
    }

    /// The pod with this uid, relisting (rate-limited) when it is not known yet.
    pub fn pod(&mut self, uid: &str) -> Option<PodMeta> {
        if let Some(p) = self.pods.get(uid) {
            return Some(p.clone());
        }
        let due = self
            .last_list
            .is_none_or(|t| t.elapsed() >= self.min_relist);
        if due {
            if let Err(e) = self.refresh() {
                warn_once(
                    "k8s:list",
                    format!("cannot list pods from {}: {e}", self.cfg.server),
                );
            }
        }
        self.pods.get(uid).cloned()
    }
}

/// A TLS client trusting `ca_pem` (or the web PKI roots), with no proxy and a global timeout.
fn tls_agent(ca_pem: Option<&[u8]>, timeout: Duration) -> Result<ureq::Agent, DiscoveryError> {
    use ureq::tls::{parse_pem, PemItem, RootCerts, TlsConfig};
    let roots = match ca_pem {
        Some(pem) => {
            let certs: Vec<_> = parse_pem(pem)
                .filter_map(|i| match i {
                    Ok(PemItem::Certificate(c)) => Some(c),
                    _ => None,
                })
                .collect();
            if certs.is_empty() {
                return Err(DiscoveryError::parse("Kubernetes CA", "no PEM certificate"));
            }
            RootCerts::new_with_certs(&certs)
        }
        None => RootCerts::WebPki,
    };
    let cfg = ureq::Agent::config_builder()
        .tls_config(TlsConfig::builder().root_certs(roots).build())
        .timeout_global(Some(timeout))
        .http_status_as_error(false)
        .proxy(None)
        .build();
    Ok(cfg.into())
}

#[cfg(test)]
mod tests {
    use super::*;

    const YAML: &str = r#"apiVersion: v1
clusters:
- cluster:
    certificate-authority-data: AAAA
    server: https://10.0.0.1:6443
  name: prod
- cluster:
    server: http://127.0.0.1:8001
  name: proxy
contexts:
- context:
    cluster: prod
    user: admin
  name: prod-ctx
- context:
    cluster: proxy
    namespace: shop
    user: viewer
  name: proxy-ctx
current-context: proxy-ctx
kind: Config
preferences: {}
users:
- name: admin
  user:
    client-certificate-data: BBBB
- name: viewer
  user:
    token: "s3cr3t"
"#;

    #[test]
    fn kubeconfig_yaml_current_context() {
        let c = parse_kubeconfig(YAML).unwrap();
        assert_eq!(c.server, "http://127.0.0.1:8001");
        assert_eq!(c.token.as_deref(), Some("s3cr3t"));
        assert_eq!(c.namespace.as_deref(), Some("shop"));
        let other = YAML.replace("current-context: proxy-ctx", "current-context: prod-ctx");
        let c = parse_kubeconfig(&other).unwrap();
        assert_eq!(c.server, "https://10.0.0.1:6443");
        assert_eq!(c.token, None);
    }

    #[test]
    fn kubeconfig_json() {
        let j = r#"{"clusters":[{"name":"c","cluster":{"server":"http://127.0.0.1:9"}}],
            "contexts":[{"name":"x","context":{"cluster":"c","user":"u"}}],
            "users":[{"name":"u","user":{"token":"t"}}],"current-context":"x"}"#;
        let c = parse_kubeconfig(j).unwrap();
        assert_eq!(c.server, "http://127.0.0.1:9");
        assert_eq!(c.token.as_deref(), Some("t"));
        assert!(parse_kubeconfig("{broken").is_err());
        assert!(parse_kubeconfig("kind: Config\n").is_err());
    }

    #[test]
    fn images() {
        assert_eq!(split_image("nginx:1.25"), ("nginx".into(), "1.25".into()));
        assert_eq!(
            split_image("reg:5000/team/app:2.0@sha256:abc"),
            ("reg:5000/team/app".into(), "2.0".into())
        );
        assert_eq!(
            split_image("reg:5000/app"),
            ("reg:5000/app".into(), String::new())
        );
    }

    #[test]
    fn pod_json() {
        let v: Value = serde_json::from_str(
            r#"{"metadata":{"name":"web-7d4b9-xk2","namespace":"shop","uid":"u1",
                "labels":{"app.kubernetes.io/name":"web"},
                "ownerReferences":[{"kind":"ReplicaSet","name":"web-7d4b9","controller":true}]},
               "spec":{"nodeName":"n1","containers":[{"name":"web","image":"shop/web:1.4"},{"name":"side","image":"envoy:1"}]},
               "status":{"containerStatuses":[{"name":"web","containerID":"containerd://abc"}]}}"#,
        )
        .unwrap();
        let p = parse_pod(&v).unwrap();
        assert_eq!(
            p.owners.get("ReplicaSet").map(String::as_str),
            Some("web-7d4b9")
        );
        assert_eq!(
            p.container(Some("abc"), None),
            Some(("web", "shop/web:1.4"))
        );
        assert_eq!(p.container(None, Some("side")), Some(("side", "envoy:1")));
        assert_eq!(p.container(Some("zzz"), None), None);
        let a = p.attrs(Some("abc"), None);
        assert_eq!(
            crate::discovery::util::attr_str(&a, "k8s.node.name"),
            Some("n1")
        );
        assert_eq!(
            crate::discovery::util::attr_str(&a, "container.image.tag"),
            Some("1.4")
        );
    }

    #[test]
    fn bad_ca_or_scheme_is_refused_politely() {
        let cfg = ApiConfig {
            server: "https://10.0.0.1:6443".into(),
            token: None,
            namespace: None,
            ca_pem: Some(b"not a certificate".to_vec()),
        };
        assert!(K8sClient::new(cfg.clone(), None, Duration::from_secs(1)).is_none());
        let cfg = ApiConfig {
            server: "ftp://x".into(),
            ca_pem: None,
            ..cfg
        };
        assert!(K8sClient::new(cfg, None, Duration::from_secs(1)).is_none());
    }

    #[test]
    fn base64() {
        assert_eq!(base64_decode("aGVsbG8gd29ybGQ=").unwrap(), b"hello world");
        assert!(base64_decode("aGk*").is_none());
        assert_eq!(base64_decode("YQ").unwrap(), b"a");
    }

    #[test]
    fn kubeconfig_ca_data() {
        let y = "clusters:\n- cluster:\n    certificate-authority-data: aGVsbG8=\n    server: https://127.0.0.1:6443\n  name: c\ncontexts:\n- context:\n    cluster: c\n    user: u\n  name: x\ncurrent-context: x\nusers:\n- name: u\n  user:\n    token: t\n";
        let c = parse_kubeconfig(y).unwrap();
        assert_eq!(c.ca_pem.as_deref(), Some(&b"hello"[..]));
        assert_eq!(c.token.as_deref(), Some("t"));
    }
}
