//! Integration tests for auto-discovery: local metadata servers speaking each cloud's protocol
//! (including one that hangs and ones that answer garbage), a fake Kubernetes API behind an
//! http:// kubeconfig, captured /proc fixtures, and real processes (Python, Redis, Java, and C
//! binaries built here) checked for runtime, TLS and database detection. Every network address
//! is 127.0.0.1; every process started here is killed by a guard, even when a test fails.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use clap::Parser;
use telegen::discovery::{
    attr_str, cloud::CloudOptions, discover_report, k8s, run_discover, DiscoverArgs, Discovery,
    DiscoveryOptions, MatchedBy, ServiceKind,
};
use telegen_dataplane::signal::{AttrValue, Attrs};

const ID: &str = "3f4e8a1c2b5d6e7f8091a2b3c4d5e6f708192a3b4c5d6e7f8091a2b3c4d5e6f7";
const POD_UID: &str = "8a1b2c3d-4e5f-6071-8293-a4b5c6d7e8f9";

fn fixtures() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/discovery")
}

/// Options over the fixture tree: bare-metal DMI (so no cloud is probed unless overridden).
fn fixture_options() -> DiscoveryOptions {
    let f = fixtures();
    DiscoveryOptions {
        proc_root: f.join("proc"),
        sys_root: f.join("sys/baremetal"),
        etc_root: f.join("etc/debian12"),
        docker_root: f.join("docker"),
        in_cluster: false,
        cloud: CloudOptions {
            enabled: false,
            ..Default::default()
        },
        ..Default::default()
    }
}

/// Options over the live machine, never touching a cloud or an API server.
fn live_options() -> DiscoveryOptions {
    DiscoveryOptions {
        in_cluster: false,
        cloud: CloudOptions {
            enabled: false,
            ..Default::default()
        },
        ..Default::default()
    }
}

fn has(a: &Attrs, k: &str, v: &str) -> bool {
    attr_str(a, k) == Some(v)
}

// ---------------------------------------------------------------------------------------------
// A tiny HTTP server for metadata and Kubernetes fakes.

/// What the fake server does with one request.
enum Reply {
    Http(u16, Vec<(String, String)>, String),
    /// Accept and say nothing for this long.
    Hang(Duration),
    /// Raw bytes, then close.
    Raw(Vec<u8>),
}

fn ok_json(body: &str) -> Reply {
    Reply::Http(
        200,
        vec![("Content-Type".into(), "application/json".into())],
        body.to_string(),
    )
}

struct Request {
    method: String,
    path: String,
    headers: Vec<(String, String)>,
}

impl Request {
    fn header(&self, k: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(x, _)| x.eq_ignore_ascii_case(k))
            .map(|(_, v)| v.as_str())
    }
}

struct FakeServer {
    url: String,
    stop: Arc<AtomicBool>,
    handle: Option<thread::JoinHandle<()>>,
}

impl FakeServer {
    fn start(handler: impl Fn(&Request) -> Reply + Send + Sync + 'static) -> FakeServer {
        Self::start_with(None, handler)
    }

    /// An HTTPS server with the fixture certificate (signed by fixtures/k8s-tls/ca.crt).
    fn start_tls(handler: impl Fn(&Request) -> Reply + Send + Sync + 'static) -> FakeServer {
        use rustls::pki_types::pem::PemObject;
        use rustls::pki_types::{CertificateDer, PrivateKeyDer};
        let dir = fixtures().join("k8s-tls");
        let certs: Vec<CertificateDer<'static>> =
            CertificateDer::pem_file_iter(dir.join("server.crt"))
                .unwrap()
                .map(|c| c.unwrap())
                .collect();
        let key = PrivateKeyDer::from_pem_file(dir.join("server.key")).unwrap();
        let cfg = rustls::ServerConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .unwrap();
        Self::start_with(Some(Arc::new(cfg)), handler)
    }

    fn start_with(
        tls: Option<Arc<rustls::ServerConfig>>,
        handler: impl Fn(&Request) -> Reply + Send + Sync + 'static,
    ) -> FakeServer {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        l.set_nonblocking(true).unwrap();
        let scheme = if tls.is_some() { "https" } else { "http" };
        let url = format!("{scheme}://{}", l.local_addr().unwrap());
        let stop = Arc::new(AtomicBool::new(false));
        let s2 = stop.clone();
        let handler = Arc::new(handler);
        let handle = thread::spawn(move || {
            while !s2.load(Ordering::Relaxed) {
                match l.accept() {
                    Ok((conn, _)) => {
                        let h = handler.clone();
                        let s3 = s2.clone();
                        let tls = tls.clone();
                        conn.set_nonblocking(false).unwrap();
                        conn.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
                        thread::spawn(move || match tls {
                            None => serve(conn, &*h, &s3),
                            Some(cfg) => {
                                let sc = rustls::ServerConnection::new(cfg).unwrap();
                                serve(rustls::StreamOwned::new(sc, conn), &*h, &s3)
                            }
                        });
                    }
                    Err(_) => thread::sleep(Duration::from_millis(5)),
                }
            }
        });
        FakeServer {
            url,
            stop,
            handle: Some(handle),
        }
    }
}

impl Drop for FakeServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}

fn serve<S: Read + Write>(
    mut conn: S,
    h: &(dyn Fn(&Request) -> Reply + Send + Sync),
    stop: &AtomicBool,
) {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
        match conn.read(&mut chunk) {
            Ok(0) | Err(_) => return,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    }
    let text = String::from_utf8_lossy(&buf).into_owned();
    let mut lines = text.split("\r\n");
    let first: Vec<&str> = lines.next().unwrap_or("").split(' ').collect();
    let req = Request {
        method: first.first().unwrap_or(&"").to_string(),
        path: first.get(1).unwrap_or(&"").to_string(),
        headers: lines
            .take_while(|l| !l.is_empty())
            .filter_map(|l| l.split_once(':'))
            .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
            .collect(),
    };
    match h(&req) {
        Reply::Http(status, headers, body) => {
            let mut out = format!("HTTP/1.1 {status} X\r\nContent-Length: {}\r\n", body.len());
            for (k, v) in headers {
                out.push_str(&format!("{k}: {v}\r\n"));
            }
            out.push_str("\r\n");
            out.push_str(&body);
            let _ = conn.write_all(out.as_bytes());
            let _ = conn.flush();
        }
        Reply::Hang(d) => {
            let until = Instant::now() + d;
            while Instant::now() < until && !stop.load(Ordering::Relaxed) {
                thread::sleep(Duration::from_millis(10));
            }
        }
        Reply::Raw(b) => {
            let _ = conn.write_all(&b);
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Clouds.

fn aws_server() -> FakeServer {
    FakeServer::start(|r| match (r.method.as_str(), r.path.as_str()) {
        ("PUT", "/latest/api/token")
            if r.header("X-aws-ec2-metadata-token-ttl-seconds").is_some() =>
        {
            Reply::Http(200, vec![], "tok-123".into())
        }
        ("GET", "/latest/dynamic/instance-identity/document") => {
            if r.header("X-aws-ec2-metadata-token") != Some("tok-123") {
                return Reply::Http(401, vec![], String::new());
            }
            ok_json(
                r#"{"accountId":"123456789012","architecture":"x86_64","availabilityZone":"eu-west-1b",
                "imageId":"ami-0abc","instanceId":"i-0123456789abcdef0","instanceType":"m6a.large",
                "privateIp":"10.0.0.5","region":"eu-west-1","version":"2017-09-30"}"#,
            )
        }
        _ => Reply::Http(404, vec![], String::new()),
    })
}

fn cloud_opts(timeout_ms: u64) -> DiscoveryOptions {
    let mut o = fixture_options();
    o.cloud.enabled = true;
    o.cloud.timeout = Duration::from_millis(timeout_ms);
    o
}

#[test]
fn aws_imdsv2_with_token() {
    let srv = aws_server();
    let mut o = cloud_opts(1000);
    o.cloud.aws_endpoint = Some(srv.url.clone());
    let h = Discovery::new(o).host_resource();
    assert!(has(&h, "cloud.provider", "aws"), "{h:?}");
    assert!(has(&h, "cloud.platform", "aws_ec2"));
    assert!(has(&h, "cloud.region", "eu-west-1"));
    assert!(has(&h, "cloud.availability_zone", "eu-west-1b"));
    assert!(has(&h, "cloud.account.id", "123456789012"));
    assert!(has(&h, "host.id", "i-0123456789abcdef0"));
    assert!(has(&h, "host.type", "m6a.large"));
    // The host part is still there.
    assert!(has(&h, "os.name", "Debian GNU/Linux"));
}

#[test]
fn aws_without_token_support_is_left_out() {
    let srv = FakeServer::start(|r| match r.method.as_str() {
        "PUT" => Reply::Http(403, vec![], String::new()),
        _ => ok_json(r#"{"instanceId":"i-1","region":"x"}"#),
    });
    let mut o = cloud_opts(500);
    o.cloud.aws_endpoint = Some(srv.url.clone());
    let h = Discovery::new(o).host_resource();
    assert_eq!(attr_str(&h, "cloud.provider"), None);
}

#[test]
fn gcp_metadata() {
    let srv = FakeServer::start(|r| {
        if r.header("Metadata-Flavor") != Some("Google") {
            return Reply::Http(403, vec![], String::new());
        }
        let g = vec![("Metadata-Flavor".to_string(), "Google".to_string())];
        match r.path.as_str() {
            "/computeMetadata/v1/instance/?recursive=true" => Reply::Http(
                200,
                g,
                r#"{"id":4520031799277581759,"name":"vm-1","hostname":"vm-1.c.proj.internal",
                "machineType":"projects/998877/machineTypes/e2-medium",
                "zone":"projects/998877/zones/us-central1-a"}"#
                    .into(),
            ),
            "/computeMetadata/v1/project/project-id" => Reply::Http(200, g, "my-project".into()),
            _ => Reply::Http(404, g, String::new()),
        }
    });
    let mut o = cloud_opts(1000);
    o.cloud.gcp_endpoint = Some(srv.url.clone());
    let h = Discovery::new(o).host_resource();
    assert!(has(&h, "cloud.provider", "gcp"), "{h:?}");
    assert!(has(&h, "cloud.platform", "gcp_compute_engine"));
    assert!(has(&h, "cloud.region", "us-central1"));
    assert!(has(&h, "cloud.availability_zone", "us-central1-a"));
    assert!(has(&h, "cloud.account.id", "my-project"));
    assert!(has(&h, "host.id", "4520031799277581759"));
    assert!(has(&h, "host.type", "e2-medium"));
}

#[test]
fn gcp_lookalike_without_flavor_header_is_rejected() {
    let srv = FakeServer::start(|_| ok_json(r#"{"id":1,"zone":"projects/1/zones/a-b-c"}"#));
    let mut o = cloud_opts(500);
    o.cloud.gcp_endpoint = Some(srv.url.clone());
    assert_eq!(
        attr_str(&Discovery::new(o).host_resource(), "cloud.provider"),
        None
    );
}

#[test]
fn azure_imds() {
    let srv = FakeServer::start(|r| {
        if r.header("Metadata") != Some("true")
            || !r.path.starts_with("/metadata/instance/compute?")
        {
            return Reply::Http(400, vec![], String::new());
        }
        ok_json(
            r#"{"location":"westeurope","zone":"2","subscriptionId":"8d10da13-8125-4ba9-a717-bf7490507b3d",
            "vmId":"02aab8a4-74ef-476e-8182-f6d2ba4166a6","vmSize":"Standard_D2s_v5","name":"vm-az",
            "resourceGroupName":"rg-shop","osType":"Linux"}"#,
        )
    });
    let mut o = cloud_opts(1000);
    o.cloud.azure_endpoint = Some(srv.url.clone());
    let h = Discovery::new(o).host_resource();
    assert!(has(&h, "cloud.provider", "azure"), "{h:?}");
    assert!(has(&h, "cloud.platform", "azure_vm"));
    assert!(has(&h, "cloud.region", "westeurope"));
    assert!(has(&h, "cloud.availability_zone", "2"));
    assert!(has(
        &h,
        "cloud.account.id",
        "8d10da13-8125-4ba9-a717-bf7490507b3d"
    ));
    assert!(has(&h, "host.id", "02aab8a4-74ef-476e-8182-f6d2ba4166a6"));
    assert!(has(&h, "host.type", "Standard_D2s_v5"));
}

#[test]
fn oracle_cloud_imds_v2() {
    let srv = FakeServer::start(|r| {
        if r.header("Authorization") != Some("Bearer Oracle") || r.path != "/opc/v2/instance/" {
            return Reply::Http(401, vec![], String::new());
        }
        ok_json(
            r#"{"id":"ocid1.instance.oc1.fra.abc","region":"fra","canonicalRegionName":"eu-frankfurt-1",
            "availabilityDomain":"Uocm:EU-FRANKFURT-1-AD-1","shape":"VM.Standard.E4.Flex",
            "compartmentId":"ocid1.compartment.oc1..xyz","tenantId":"ocid1.tenancy.oc1..t"}"#,
        )
    });
    let mut o = cloud_opts(1000);
    o.cloud.oracle_endpoint = Some(srv.url.clone());
    let h = Discovery::new(o).host_resource();
    assert!(has(&h, "cloud.provider", "oracle_cloud"), "{h:?}");
    assert!(has(&h, "cloud.region", "eu-frankfurt-1"));
    assert!(has(
        &h,
        "cloud.availability_zone",
        "Uocm:EU-FRANKFURT-1-AD-1"
    ));
    assert!(has(&h, "cloud.account.id", "ocid1.tenancy.oc1..t"));
    assert!(has(&h, "host.type", "VM.Standard.E4.Flex"));
}

#[test]
fn hanging_metadata_service_stays_within_budget() {
    // Every provider hangs for 60 s; with a 300 ms budget discovery must not wait them out.
    let hang = FakeServer::start(|_| Reply::Hang(Duration::from_secs(60)));
    let mut o = cloud_opts(300);
    o.cloud.aws_endpoint = Some(hang.url.clone());
    o.cloud.gcp_endpoint = Some(hang.url.clone());
    o.cloud.azure_endpoint = Some(hang.url.clone());
    o.cloud.oracle_endpoint = Some(hang.url.clone());
    let t = Instant::now();
    let h = Discovery::new(o).host_resource();
    let took = t.elapsed();
    assert!(
        took < Duration::from_secs(30),
        "waited for the hanging providers: {took:?}"
    );
    assert_eq!(attr_str(&h, "cloud.provider"), None);
    assert!(attr_str(&h, "host.name").is_some());
}

#[test]
fn one_hanging_provider_does_not_hide_a_working_one() {
    // The hang (60 s) is far longer than the probe timeout (300 ms): finishing well before it
    // shows the timeout cut the hanging probe short (not a timing measurement: the margin is
    // minutes).
    let hang = FakeServer::start(|_| Reply::Hang(Duration::from_secs(60)));
    let aws = aws_server();
    let mut o = cloud_opts(300);
    o.cloud.aws_endpoint = Some(aws.url.clone());
    o.cloud.gcp_endpoint = Some(hang.url.clone());
    let t = Instant::now();
    let h = Discovery::new(o).host_resource();
    assert!(
        t.elapsed() < Duration::from_secs(30),
        "waited for the hanging provider: {:?}",
        t.elapsed()
    );
    assert!(has(&h, "cloud.provider", "aws"), "{h:?}");
}

#[test]
fn garbage_answers_are_left_out() {
    let raw = FakeServer::start(|_| {
        Reply::Raw(b"\x00\x13\x37 this is not HTTP at all\r\n\r\n\xff\xfe".to_vec())
    });
    let not_json = FakeServer::start(|r| {
        let g = vec![("Metadata-Flavor".to_string(), "Google".to_string())];
        match r.method.as_str() {
            "PUT" => Reply::Http(200, vec![], "tok".into()),
            _ => Reply::Http(200, g, "<html>{{{ not json".into()),
        }
    });
    let array = FakeServer::start(|_| ok_json("[1,2,3]"));
    let mut o = cloud_opts(500);
    o.cloud.aws_endpoint = Some(not_json.url.clone());
    o.cloud.gcp_endpoint = Some(not_json.url.clone());
    o.cloud.azure_endpoint = Some(raw.url.clone());
    o.cloud.oracle_endpoint = Some(array.url.clone());
    let h = Discovery::new(o).host_resource();
    assert!(!h.iter().any(|(k, _)| k.starts_with("cloud.")), "{h:?}");
}

#[test]
fn closed_port_fails_fast() {
    let port = {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    // A refused connection must not wait out the (60 s) timeout.
    let mut o = cloud_opts(60_000);
    o.cloud.aws_endpoint = Some(format!("http://127.0.0.1:{port}"));
    let t = Instant::now();
    let h = Discovery::new(o).host_resource();
    assert!(
        t.elapsed() < Duration::from_secs(30),
        "waited for the timeout: {:?}",
        t.elapsed()
    );
    assert_eq!(attr_str(&h, "cloud.provider"), None);
}

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

// ---------------------------------------------------------------------------------------------
// Real processes.

/// Kills and reaps its child on drop, whatever happened.
struct Guard(Child);

impl Drop for Guard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Guard {
    fn pid(&self) -> u32 {
        self.0.id()
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn wait_for_port(port: u16, g: &mut Guard, secs: u64) -> bool {
    let until = Instant::now() + Duration::from_secs(secs);
    while Instant::now() < until {
        if TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return true;
        }
        if let Ok(Some(_)) = g.0.try_wait() {
            return false;
        }
        thread::sleep(Duration::from_millis(50));
    }
    false
}

fn which(bin: &str) -> Option<PathBuf> {
    std::env::var_os("PATH").and_then(|p| {
        std::env::split_paths(&p)
            .map(|d| d.join(bin))
            .find(|c| c.is_file())
    })
}

fn spawn(cmd: &mut Command) -> Guard {
    Guard(
        cmd.stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    )
}

fn tmpdir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("telegen-disc-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// The process's pid once its executable is no longer a launcher script (pyenv shims exec).
fn settled_exe(pid: u32, want: &str) -> bool {
    let until = Instant::now() + Duration::from_secs(10);
    while Instant::now() < until {
        if let Ok(p) = std::fs::read_link(format!("/proc/{pid}/exe")) {
            if p.to_string_lossy().contains(want) {
                return true;
            }
        }
        thread::sleep(Duration::from_millis(50));
    }
    false
}

#[test]
fn real_python_http_server() {
    let Some(py) = which("python3") else {
        println!("skipped: python3 not on PATH");
        return;
    };
    let port = free_port();
    let mut g = spawn(Command::new(py).args([
        "-m",
        "http.server",
        "--bind",
        "127.0.0.1",
        &port.to_string(),
    ]));
    assert!(
        wait_for_port(port, &mut g, 20),
        "python http.server did not start"
    );
    assert!(settled_exe(g.pid(), "python"));
    let mut d = Discovery::new(live_options());
    let a = d.process_resource(g.pid());
    assert!(has(&a, "process.runtime.name", "python"), "{a:?}");
    let v = attr_str(&a, "process.runtime.version").unwrap_or("");
    assert!(v.starts_with("3."), "python version {v:?}");
    assert!(has(&a, "service.name", "http.server"), "{a:?}");
    // Not a database: the services scan leaves it out.
    assert!(!d.services().iter().any(|s| s.pid == g.pid()));
}

#[test]
fn real_redis_server_is_a_discovered_database() {
    let Some(redis) = which("redis-server")
        .or_else(|| Some(PathBuf::from("/usr/bin/redis-server")).filter(|p| p.is_file()))
    else {
        println!("skipped: redis-server not installed (apt-get install -y redis-server)");
        return;
    };
    let port = free_port();
    let mut g = spawn(Command::new(redis).args([
        "--port",
        &port.to_string(),
        "--bind",
        "127.0.0.1",
        "--save",
        "",
        "--appendonly",
        "no",
        "--daemonize",
        "no",
    ]));
    assert!(
        wait_for_port(port, &mut g, 20),
        "redis-server did not start"
    );
    let mut d = Discovery::new(live_options());
    let svc = d.services();
    let s = svc
        .iter()
        .find(|s| s.pid == g.pid())
        .unwrap_or_else(|| panic!("redis not among {svc:?}"));
    assert_eq!(s.system, "redis");
    assert_eq!(s.kind, ServiceKind::Database);
    assert_eq!(s.matched_by, MatchedBy::Executable);
    assert!(s.listen.iter().any(|a| a.port() == port), "{:?}", s.listen);
    assert!(has(&s.attrs(), "db.system.name", "redis"));
    let a = d.process_resource(g.pid());
    assert!(has(&a, "process.executable.name", "redis-server"), "{a:?}");
    // Redis is C, though Debian's build links libstdc++ (for a C++ float parser): native either way.
    assert!(
        matches!(attr_str(&a, "process.runtime.name"), Some("c" | "c++")),
        "{a:?}"
    );
    let maps = std::fs::read_to_string(format!("/proc/{}/maps", g.pid())).unwrap_or_default();
    if maps.contains("libssl.so") {
        assert!(has(&a, "telegen.tls.library", "openssl"), "{a:?}");
    }
}

#[test]
fn real_java_program() {
    let (Some(javac), Some(java)) = (which("javac"), which("java")) else {
        println!("skipped: no JDK (javac/java) on PATH");
        return;
    };
    let dir = tmpdir("java");
    std::fs::write(
        dir.join("Hold.java"),
        "public class Hold { public static void main(String[] a) throws Exception { \
         java.net.ServerSocket s = new java.net.ServerSocket(Integer.parseInt(a[0]), 1, \
         java.net.InetAddress.getByName(\"127.0.0.1\")); Thread.sleep(60000); } }",
    )
    .unwrap();
    let st = Command::new(javac)
        .arg("Hold.java")
        .current_dir(&dir)
        .status()
        .unwrap();
    assert!(st.success());
    let port = free_port();
    let mut g =
        spawn(Command::new(java).args(["-cp", dir.to_str().unwrap(), "Hold", &port.to_string()]));
    assert!(wait_for_port(port, &mut g, 30), "java did not start");
    let mut d = Discovery::new(live_options());
    let a = d.process_resource(g.pid());
    assert!(has(&a, "process.runtime.name", "java"), "{a:?}");
    let v = attr_str(&a, "process.runtime.version");
    assert!(
        v.is_some_and(|v| v.chars().next().unwrap().is_ascii_digit()),
        "{a:?}"
    );
    assert!(has(&a, "service.name", "Hold"), "{a:?}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn real_go_binary() {
    let Some(go) = which("go") else {
        println!("skipped: no Go toolchain on PATH");
        return;
    };
    let dir = tmpdir("go");
    std::fs::write(dir.join("go.mod"), "module example.com/hold\n\ngo 1.18\n").unwrap();
    std::fs::write(
        dir.join("main.go"),
        "package main\nimport \"time\"\nfunc main() { time.Sleep(time.Minute) }\n",
    )
    .unwrap();
    let st = Command::new(go)
        .args(["build", "-o", "hold", "."])
        .current_dir(&dir)
        .env("GOFLAGS", "-mod=mod")
        .status()
        .unwrap();
    assert!(st.success());
    let g = spawn(&mut Command::new(dir.join("hold")));
    assert!(settled_exe(g.pid(), "hold"));
    let a = Discovery::new(live_options()).process_resource(g.pid());
    assert!(has(&a, "process.runtime.name", "go"), "{a:?}");
    assert!(attr_str(&a, "process.runtime.version").is_some_and(|v| v.starts_with('1')));
    assert!(has(&a, "telegen.tls.library", "go"));
    // The module path comes from the same build info.
    assert!(
        attr_str(&a, "process.runtime.description").is_some_and(|d| d.contains("example.com/hold")),
        "{a:?}"
    );
    drop(g);
    let _ = std::fs::remove_dir_all(&dir);
}

fn cc(dir: &Path, src: &str, out: &str, args: &[&str]) -> bool {
    let Some(cc) = which("cc").or_else(|| which("gcc")) else {
        return false;
    };
    std::fs::write(dir.join("m.c"), src).unwrap();
    Command::new(cc)
        .arg("m.c")
        .arg("-o")
        .arg(out)
        .args(args)
        .current_dir(dir)
        .stderr(Stdio::null())
        .status()
        .map(|s| s.success())
        .unwrap_or(false)
}

#[test]
fn real_static_stripped_c_binary() {
    let dir = tmpdir("cstatic");
    if !cc(
        &dir,
        "#include <unistd.h>\nint main(void){ sleep(60); return 0; }\n",
        "hold",
        &["-static", "-s"],
    ) {
        println!("skipped: no C compiler or static libc");
        return;
    }
    let g = spawn(&mut Command::new(dir.join("hold")));
    assert!(settled_exe(g.pid(), "hold"));
    let a = Discovery::new(live_options()).process_resource(g.pid());
    assert!(has(&a, "process.runtime.name", "c"), "{a:?}");
    assert!(has(&a, "telegen.process.linkage", "static"), "{a:?}");
    assert!(
        a.contains(&("telegen.process.stripped", AttrValue::Bool(true))),
        "{a:?}"
    );
    drop(g);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn real_c_binary_linking_libssl() {
    let dir = tmpdir("cssl");
    let src = "#include <unistd.h>\nextern int OPENSSL_init_ssl(unsigned long, const void *);\n\
               int main(void){ OPENSSL_init_ssl(0, 0); sleep(60); return 0; }\n";
    if !cc(&dir, src, "hold", &["-l:libssl.so.3"]) {
        println!("skipped: cannot link against libssl.so.3 here");
        return;
    }
    let g = spawn(&mut Command::new(dir.join("hold")));
    assert!(settled_exe(g.pid(), "hold"));
    thread::sleep(Duration::from_millis(100));
    let a = Discovery::new(live_options()).process_resource(g.pid());
    assert!(has(&a, "telegen.tls.library", "openssl"), "{a:?}");
    assert!(
        attr_str(&a, "telegen.tls.library.path").is_some_and(|p| p.contains("libssl.so")),
        "{a:?}"
    );
    assert!(has(&a, "telegen.process.linkage", "dynamic"));
    assert!(
        a.contains(&("telegen.process.stripped", AttrValue::Bool(false))),
        "{a:?}"
    );
    drop(g);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn cache_is_per_pid_invalidated_on_exit_and_bounded() {
    let mut o = live_options();
    o.cache_capacity = 4;
    let mut d = Discovery::new(o);
    let mut kids: Vec<Guard> = (0..6)
        .map(|_| spawn(Command::new("sleep").arg("60")))
        .collect();
    for k in &kids {
        assert!(settled_exe(k.pid(), "sleep"));
    }
    let first = kids[0].pid();
    let a1 = d.process_resource(first);
    assert!(has(&a1, "process.executable.name", "sleep"), "{a1:?}");
    assert_eq!(d.process_resource(first), a1);
    for k in &kids {
        d.process_resource(k.pid());
    }
    assert!(d.cached() <= 4, "cache holds {}", d.cached());
    let last = kids.pop().unwrap();
    let pid = last.pid();
    d.process_resource(pid);
    drop(last); // kill + reap
    assert_eq!(
        d.process_resource(pid),
        vec![("process.pid", AttrValue::Int(pid as i64))]
    );
    drop(kids);
}

#[test]
fn live_host_never_panics() {
    let d = Discovery::new(live_options());
    let h = d.host_resource();
    assert!(has(&h, "os.type", "linux"));
    assert!(attr_str(&h, "host.arch").is_some());
}

#[test]
fn discovery_can_move_to_another_thread() {
    fn assert_send<T: Send + 'static>() {}
    assert_send::<Discovery>();
    let d = Discovery::new(fixture_options());
    let h = thread::spawn(move || d.host_resource()).join().unwrap();
    assert!(has(&h, "host.name", "fixture-host"));
}
