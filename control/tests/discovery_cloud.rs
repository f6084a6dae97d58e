//! Cloud discovery against local metadata servers speaking each cloud's protocol, including one
//! that hangs and ones that answer garbage. Every address is 127.0.0.1.

mod common;

use std::net::TcpListener;
use std::time::{Duration, Instant};

use telegen::discovery::{attr_str, Discovery, DiscoveryOptions};

use common::*;

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
