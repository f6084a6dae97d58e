//! Service naming: `service.name`, `service.version`, `service.namespace` and
//! `service.instance.id` for a process, from, in order: `OTEL_SERVICE_NAME` and
//! `OTEL_RESOURCE_ATTRIBUTES` in the process's own environment; the pod's
//! `resource.opentelemetry.io/*` annotations, `app.kubernetes.io/*` labels and owner names (the
//! order the OpenTelemetry operator uses); the container name; and finally the executable (or the
//! script, module or jar an interpreter runs). Dynamic keys are mapped only onto known
//! `&'static str` semantic-convention keys.

use telegen_dataplane::signal::{AttrValue, Attrs};

use super::k8s::PodMeta;
use super::util::set_attr;

/// Resource keys a process's environment or a pod annotation may set.
pub const KNOWN_KEYS: &[&str] = &[
    "service.name",
    "service.version",
    "service.namespace",
    "service.instance.id",
    "deployment.environment.name",
    "deployment.environment",
];

/// The static key equal to `k`, if it is one we accept.
pub fn static_key(k: &str) -> Option<&'static str> {
    KNOWN_KEYS.iter().copied().find(|x| *x == k)
}

fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' && i + 2 < b.len() {
            let hex = std::str::from_utf8(&b[i + 1..i + 3]).unwrap_or("");
            if let Ok(v) = u8::from_str_radix(hex, 16) {
                out.push(v);
                i += 3;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Parses `OTEL_RESOURCE_ATTRIBUTES` (`k=v,k2=v2`, values percent-encoded), keeping known keys.
pub fn parse_resource_attributes(s: &str) -> Vec<(&'static str, String)> {
    s.split(',')
        .filter_map(|kv| {
            let (k, v) = kv.split_once('=')?;
            let key = static_key(k.trim())?;
            let v = percent_decode(v.trim());
            (!v.is_empty()).then_some((key, v))
        })
        .collect()
}

/// Everything naming looks at.
pub struct NamingInput<'a> {
    pub env: &'a [(String, String)],
    pub pod: Option<&'a PodMeta>,
    pub container_id: Option<&'a str>,
    pub k8s_container_name: Option<&'a str>,
    /// A container name from the runtime (e.g. Docker's), when known.
    pub container_name: Option<&'a str>,
    pub exe_name: &'a str,
    pub cmdline: &'a [String],
    pub host_name: &'a str,
    pub pid: u32,
    pub start_ticks: u64,
}

/// The name an interpreter's program goes by: `python -m pkg`, `python app.py`, `java -jar x.jar`,
/// `java com.example.Main`, `node server.js`.
pub fn program_name(exe: &str, cmdline: &[String]) -> Option<String> {
    let interp = exe.starts_with("python")
        || exe == "java"
        || exe == "node"
        || exe == "nodejs"
        || exe.starts_with("ruby");
    if !interp {
        return None;
    }
    let args = cmdline.get(1..).unwrap_or_default();
    let mut i = 0;
    while i < args.len() {
        let a = &args[i];
        if (a == "-m" || a == "-jar") && i + 1 < args.len() {
            let v = &args[i + 1];
            let v = v.rsplit('/').next().unwrap_or(v);
            return Some(v.trim_end_matches(".jar").to_string());
        }
        if matches!(
            a.as_str(),
            "-cp" | "-classpath" | "--class-path" | "-c" | "-e" | "-r"
        ) {
            i += 2;
            continue;
        }
        if a.starts_with('-') {
            i += 1;
            continue;
        }
        let base = a.rsplit('/').next().unwrap_or(a);
        let base = base
            .trim_end_matches(".py")
            .trim_end_matches(".js")
            .trim_end_matches(".mjs")
            .trim_end_matches(".rb");
        let base = if exe == "java" {
            base.rsplit('.').next().unwrap_or(base)
        } else {
            base
        };
        return (!base.is_empty()).then(|| base.to_string());
    }
    None
}

/// Resolves the service attributes.
pub fn service_attrs(inp: &NamingInput<'_>) -> Attrs {
    let mut a = Attrs::new();
    let set = |a: &mut Attrs, k: &'static str, v: &str| {
        if !v.is_empty() && !a.iter().any(|(x, _)| *x == k) {
            a.push((k, AttrValue::Str(v.to_string())));
        }
    };
    // 1. The process's own OpenTelemetry configuration.
    let env = |k: &str| {
        inp.env
            .iter()
            .find(|(x, _)| x == k)
            .map(|(_, v)| v.as_str())
    };
    if let Some(n) = env("OTEL_SERVICE_NAME") {
        set(&mut a, "service.name", n.trim());
    }
    if let Some(r) = env("OTEL_RESOURCE_ATTRIBUTES") {
        for (k, v) in parse_resource_attributes(r) {
            set(&mut a, k, &v);
        }
    }
    // 2. Kubernetes: annotations, labels, owners.
    if let Some(pod) = inp.pod {
        for (k, v) in &pod.annotations {
            if let Some(key) = k
                .strip_prefix("resource.opentelemetry.io/")
                .and_then(static_key)
            {
                set(&mut a, key, v);
            }
        }
        let label = |k: &str| pod.labels.get(k).map(String::as_str).unwrap_or("");
        set(&mut a, "service.name", label("app.kubernetes.io/name"));
        set(&mut a, "service.name", label("app.kubernetes.io/instance"));
        set(
            &mut a,
            "service.version",
            label("app.kubernetes.io/version"),
        );
        set(
            &mut a,
            "service.namespace",
            label("app.kubernetes.io/part-of"),
        );
        for kind in [
            "Deployment",
            "StatefulSet",
            "DaemonSet",
            "CronJob",
            "Job",
            "ReplicaSet",
        ] {
            if let Some(n) = pod.owners.get(kind) {
                set(&mut a, "service.name", n);
            }
        }
        set(&mut a, "service.name", &pod.name);
        let container = pod.container(inp.container_id, inp.k8s_container_name);
        if let Some((cname, image)) = container {
            set(&mut a, "service.name", cname);
            let (_, tag) = super::k8s::split_image(image);
            if !tag.is_empty() && tag != "latest" {
                set(&mut a, "service.version", &tag);
            }
            set(
                &mut a,
                "service.instance.id",
                &format!("{}.{}.{}", pod.namespace, pod.name, cname),
            );
        }
        set(&mut a, "service.namespace", &pod.namespace);
    }
    // 3. The container's name.
    if let Some(c) = inp.container_name.or(inp.k8s_container_name) {
        set(&mut a, "service.name", c.trim_start_matches('/'));
    }
    // 4. The program.
    if let Some(p) = program_name(inp.exe_name, inp.cmdline) {
        set(&mut a, "service.name", &p);
    }
    set(&mut a, "service.name", inp.exe_name);
    let instance = format!("{}/{}-{}", inp.host_name, inp.pid, inp.start_ticks);
    set(&mut a, "service.instance.id", &instance);
    a
}

/// Merges `extra` into `base`, replacing keys that are already there.
pub fn merge_into(base: &mut Attrs, extra: Attrs) {
    for (k, v) in extra {
        set_attr(base, k, v);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::discovery::util::attr_str;

    fn input<'a>(
        env: &'a [(String, String)],
        pod: Option<&'a PodMeta>,
        cmd: &'a [String],
    ) -> NamingInput<'a> {
        NamingInput {
            env,
            pod,
            container_id: Some("abc"),
            k8s_container_name: None,
            container_name: None,
            exe_name: cmd.first().map(String::as_str).unwrap_or("app"),
            cmdline: cmd,
            host_name: "h",
            pid: 42,
            start_ticks: 7,
        }
    }

    fn pod() -> PodMeta {
        let mut p = PodMeta {
            uid: "u".into(),
            name: "web-1".into(),
            namespace: "shop".into(),
            ..Default::default()
        };
        p.containers
            .push(("web".into(), "abc".into(), "shop/web:1.4".into()));
        p.owners.insert("Deployment".into(), "web".into());
        p
    }

    #[test]
    fn env_wins() {
        let env = vec![
            ("OTEL_SERVICE_NAME".to_string(), "checkout".to_string()),
            ("OTEL_RESOURCE_ATTRIBUTES".to_string(), "service.name=ignored,service.version=2.0,deployment.environment.name=prod%20eu,bogus.key=x".to_string()),
        ];
        let p = pod();
        let a = service_attrs(&input(&env, Some(&p), &[]));
        assert_eq!(attr_str(&a, "service.name"), Some("checkout"));
        assert_eq!(attr_str(&a, "service.version"), Some("2.0"));
        assert_eq!(attr_str(&a, "deployment.environment.name"), Some("prod eu"));
        assert!(!a.iter().any(|(k, _)| *k == "bogus.key"));
    }

    #[test]
    fn kubernetes_labels_annotations_owners() {
        let mut p = pod();
        let a = service_attrs(&input(&[], Some(&p), &[]));
        assert_eq!(attr_str(&a, "service.name"), Some("web"));
        assert_eq!(attr_str(&a, "service.version"), Some("1.4"));
        assert_eq!(attr_str(&a, "service.namespace"), Some("shop"));
        assert_eq!(attr_str(&a, "service.instance.id"), Some("shop.web-1.web"));
        p.labels
            .insert("app.kubernetes.io/name".into(), "storefront".into());
        p.labels
            .insert("app.kubernetes.io/version".into(), "3.1".into());
        let a = service_attrs(&input(&[], Some(&p), &[]));
        assert_eq!(attr_str(&a, "service.name"), Some("storefront"));
        assert_eq!(attr_str(&a, "service.version"), Some("3.1"));
        p.annotations.insert(
            "resource.opentelemetry.io/service.name".into(),
            "annotated".into(),
        );
        let a = service_attrs(&input(&[], Some(&p), &[]));
        assert_eq!(attr_str(&a, "service.name"), Some("annotated"));
    }

    #[test]
    fn container_then_program_then_executable() {
        let cmd: Vec<String> = ["python3", "-u", "-m", "http.server", "8000"]
            .map(String::from)
            .to_vec();
        let mut i = input(&[], None, &cmd);
        i.container_name = Some("/frontend");
        assert_eq!(
            attr_str(&service_attrs(&i), "service.name"),
            Some("frontend")
        );
        i.container_name = None;
        assert_eq!(
            attr_str(&service_attrs(&i), "service.name"),
            Some("http.server")
        );
        let cmd: Vec<String> = [
            "java",
            "-Xmx1g",
            "-cp",
            "a.jar:b.jar",
            "com.example.OrderService",
        ]
        .map(String::from)
        .to_vec();
        assert_eq!(program_name("java", &cmd).as_deref(), Some("OrderService"));
        let cmd: Vec<String> = ["java", "-jar", "/app/billing.jar"]
            .map(String::from)
            .to_vec();
        assert_eq!(program_name("java", &cmd).as_deref(), Some("billing"));
        let cmd: Vec<String> = vec!["nginx".into()];
        let a = service_attrs(&input(&[], None, &cmd));
        assert_eq!(attr_str(&a, "service.name"), Some("nginx"));
        assert_eq!(attr_str(&a, "service.instance.id"), Some("h/42-7"));
    }

    #[test]
    fn percent_decoding() {
        assert_eq!(percent_decode("a%20b%2Cc"), "a b,c");
        assert_eq!(percent_decode("100%"), "100%");
        assert_eq!(percent_decode("%zz"), "%zz");
    }
}
