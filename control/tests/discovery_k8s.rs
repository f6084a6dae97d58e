//! Kubernetes and container discovery: a fake API server (http:// kubeconfig and in-cluster TLS),
//! captured /proc fixtures, and the `telegen discover` report over them.

mod common;

use std::path::PathBuf;
use std::time::{Duration, Instant};

use clap::Parser;
use telegen::discovery::{attr_str, discover_report, k8s, run_discover, DiscoverArgs, Discovery};
use telegen_dataplane::signal::AttrValue;

use common::*;

// ---------------------------------------------------------------------------------------------
// Kubernetes and containers over fixtures.

fn fake_k8s() -> FakeServer {
    FakeServer::start(|r| k8s_reply(r, "test-token"))
}

fn k8s_reply(r: &Request, token: &str) -> Reply {
    {
        if r.header("Authorization") != Some(format!("Bearer {token}").as_str()) {
            return Reply::Http(401, vec![], String::new());
        }
        let path = r.path.split('?').next().unwrap_or("");
        match path {
            "/api/v1/pods" => ok_json(&format!(
                r#"{{"kind":"PodList","items":[
                {{"metadata":{{"name":"web-7d4b9-xk2lp","namespace":"shop","uid":"{POD_UID}",
                  "labels":{{"app.kubernetes.io/name":"storefront","app.kubernetes.io/version":"2.4.1","pod-template-hash":"7d4b9"}},
                  "ownerReferences":[{{"apiVersion":"apps/v1","kind":"ReplicaSet","name":"web-7d4b9","controller":true}}]}},
                 "spec":{{"nodeName":"node-a","containers":[{{"name":"web","image":"registry.local/shop/web:2.4.1"}},{{"name":"istio-proxy","image":"istio/proxyv2:1.20"}}]}},
                 "status":{{"containerStatuses":[{{"name":"web","containerID":"containerd://{ID}"}},{{"name":"istio-proxy","containerID":"containerd://ffff"}}]}}}},
                {{"metadata":{{"name":"other","namespace":"kube-system","uid":"00000000-0000-0000-0000-000000000000"}},"spec":{{}}}}
                ]}}"#
            )),
            "/apis/apps/v1/namespaces/shop/replicasets/web-7d4b9" => ok_json(
                r#"{"metadata":{"name":"web-7d4b9","namespace":"shop",
                "ownerReferences":[{"kind":"Deployment","name":"web","controller":true}]}}"#,
            ),
            _ => Reply::Http(404, vec![], "{}".into()),
        }
    }
}

#[test]
fn in_cluster_api_over_tls_with_service_account_ca() {
    let api = FakeServer::start_tls(|r| k8s_reply(r, "sa-token-abc"));
    let port = api.url.rsplit(':').next().unwrap().to_string();
    let sa = fixtures().join("k8s-tls");
    let cfg = k8s::in_cluster_at("127.0.0.1", &port, &sa);
    assert_eq!(cfg.server, format!("https://127.0.0.1:{port}"));
    assert_eq!(cfg.namespace.as_deref(), Some("shop"));
    let mut c =
        k8s::K8sClient::new(cfg.clone(), Some("node-a".into()), Duration::from_secs(2)).unwrap();
    let pod = c.pod(POD_UID).expect("pod over TLS");
    assert_eq!(pod.name, "web-7d4b9-xk2lp");
    assert_eq!(
        pod.owners.get("Deployment").map(String::as_str),
        Some("web")
    );
    // A CA that did not sign the server's certificate: refused, nothing attached, no stall.
    let wrong = k8s::ApiConfig {
        ca_pem: Some(std::fs::read(sa.join("server.crt")).unwrap()),
        ..cfg
    };
    // Refused at the handshake, not after the (60 s) request timeout.
    let mut c = k8s::K8sClient::new(wrong, None, Duration::from_secs(60)).unwrap();
    let t = Instant::now();
    assert!(c.pod(POD_UID).is_none());
    assert!(t.elapsed() < Duration::from_secs(30));
}

fn write_kubeconfig(server: &str) -> PathBuf {
    let p = std::env::temp_dir().join(format!(
        "telegen-kubeconfig-{}-{}",
        std::process::id(),
        server.rsplit(':').next().unwrap_or("0")
    ));
    std::fs::write(
        &p,
        format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- cluster:\n    server: {server}\n  name: proxy\ncontexts:\n- context:\n    cluster: proxy\n    user: dev\n  name: dev\ncurrent-context: dev\nusers:\n- name: dev\n  user:\n    token: test-token\n"
        ),
    )
    .unwrap();
    p
}

#[test]
fn kubernetes_pod_owners_and_labels_from_api() {
    let api = fake_k8s();
    let kc = write_kubeconfig(&api.url);
    let mut o = fixture_options();
    o.kubeconfig = Some(kc.clone());
    let mut d = Discovery::new(o);
    assert!(d.has_kubernetes());
    let a = d.process_resource(4121);
    let _ = std::fs::remove_file(&kc);
    assert!(has(&a, "container.id", ID), "{a:?}");
    assert!(has(&a, "container.runtime", "containerd"));
    assert!(has(&a, "k8s.pod.uid", POD_UID));
    assert!(has(&a, "k8s.pod.name", "web-7d4b9-xk2lp"));
    assert!(has(&a, "k8s.namespace.name", "shop"));
    assert!(has(&a, "k8s.node.name", "node-a"));
    assert!(has(&a, "k8s.container.name", "web"));
    assert!(has(&a, "k8s.replicaset.name", "web-7d4b9"));
    assert!(has(&a, "k8s.deployment.name", "web"));
    assert!(has(&a, "container.image.name", "registry.local/shop/web"));
    assert!(has(&a, "service.name", "storefront"));
    assert!(has(&a, "service.version", "2.4.1"));
    assert!(has(&a, "service.namespace", "shop"));
    assert!(has(&a, "service.instance.id", "shop.web-7d4b9-xk2lp.web"));
    assert!(has(&a, "process.executable.name", "gunicorn"));
}

#[test]
fn without_api_server_cgroup_data_is_still_attached() {
    let mut d = Discovery::new(fixture_options());
    assert!(!d.has_kubernetes());
    let a = d.process_resource(4121);
    assert!(has(&a, "container.id", ID), "{a:?}");
    assert!(has(&a, "k8s.pod.uid", POD_UID));
    assert!(has(&a, "k8s.container.name", "web"));
    assert_eq!(attr_str(&a, "k8s.pod.name"), None);
    assert!(has(&a, "service.name", "web"));
}

#[test]
fn api_server_that_is_down_or_broken_does_not_stall() {
    for srv in [
        FakeServer::start(|_| Reply::Hang(Duration::from_secs(60))),
        FakeServer::start(|_| ok_json("{\"items\": 7}")),
    ] {
        let kc = write_kubeconfig(&srv.url);
        let mut o = fixture_options();
        o.kubeconfig = Some(kc.clone());
        o.k8s_timeout = Duration::from_millis(300);
        let mut d = Discovery::new(o);
        let t = Instant::now();
        let a = d.process_resource(4121);
        let _ = std::fs::remove_file(&kc);
        // The API server hangs for 60 s; the 300 ms timeout must cut it short.
        assert!(
            t.elapsed() < Duration::from_secs(30),
            "waited for the API server: {:?}",
            t.elapsed()
        );
        assert!(has(&a, "container.id", ID));
        assert_eq!(attr_str(&a, "k8s.pod.name"), None);
    }
}

#[test]
fn docker_container_name_and_env_service_names() {
    let mut d = Discovery::new(fixture_options());
    let a = d.process_resource(4122);
    assert!(has(&a, "container.runtime", "docker"), "{a:?}");
    assert!(has(&a, "container.name", "frontend"));
    assert!(has(&a, "service.name", "frontend"));
    let a = d.process_resource(4123);
    assert!(has(&a, "service.name", "checkout"), "{a:?}");
    assert!(has(&a, "service.version", "1.2.3"));
    assert!(has(&a, "deployment.environment.name", "staging"));
    assert!(has(&a, "process.owner", "shop"));
    assert_eq!(attr_str(&a, "container.id"), None);
}

#[test]
fn unreadable_and_missing_pids() {
    let mut d = Discovery::new(fixture_options());
    let a = d.process_resource(999_999);
    assert_eq!(a, vec![("process.pid", AttrValue::Int(999_999))]);
    assert_eq!(d.cached(), 0);
}

#[test]
fn discover_report_over_fixtures_as_table_and_json() {
    let f = fixtures();
    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        args: DiscoverArgs,
    }
    let cli = Cli::try_parse_from([
        "telegen".as_ref(),
        "--json".as_ref(),
        "--no-cloud".as_ref(),
        "--proc-root".as_ref(),
        f.join("proc").as_os_str(),
        "--sys-root".as_ref(),
        f.join("sys/aws").as_os_str(),
        "--etc-root".as_ref(),
        f.join("etc/rhel9").as_os_str(),
        "--docker-root".as_ref(),
        f.join("docker").as_os_str(),
    ] as [&std::ffi::OsStr; 11])
    .unwrap();
    assert!(cli.args.json && cli.args.env.no_cloud);
    let r = discover_report(&cli.args);
    let j = r.to_json();
    assert_eq!(j["host"]["os.name"], "Red Hat Enterprise Linux");
    assert_eq!(j["host"]["telegen.host.hypervisor"], "kvm");
    assert!(j["host"].get("cloud.provider").is_none());
    let pids: Vec<u64> = j["processes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["pid"].as_u64().unwrap())
        .collect();
    assert_eq!(pids, vec![4121, 4122, 4123]);
    let t = r.to_table();
    assert!(t.contains("checkout") && t.contains("frontend"), "{t}");
    run_discover(&cli.args).unwrap();
}
