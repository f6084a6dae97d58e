//! Cloud metadata: AWS (IMDSv2 with a session token), GCP, Azure and Oracle Cloud, through their
//! link-local metadata services. DMI strings decide which providers are worth asking: on a machine
//! whose DMI names no cloud nothing is probed; when DMI is unreadable (some containers, some ARM
//! boards, micro-VMs) nothing is probed either unless `probe_without_dmi` is set, because a
//! link-local probe on a network that is not a cloud's goes to an address nobody vouched for. All probes run at once on their own threads and share one
//! deadline, so a machine without a cloud pays at most that deadline once. Endpoints can be
//! overridden (flags, env, tests); when any is overridden, only the overridden ones are probed.

use std::sync::mpsc;
use std::time::{Duration, Instant};

use serde_json::Value;
use telegen_dataplane::signal::{AttrValue, Attrs};

use super::host::Dmi;
use super::http;
use super::util::{push_str, warn_once, DiscoveryError};

/// The default link-local metadata address every supported provider answers on.
pub const DEFAULT_ENDPOINT: &str = "http://169.254.169.254";

/// A cloud we know how to ask.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Provider {
    Aws,
    Gcp,
    Azure,
    Oracle,
}

impl Provider {
    pub const ALL: [Provider; 4] = [
        Provider::Aws,
        Provider::Gcp,
        Provider::Azure,
        Provider::Oracle,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Provider::Aws => "aws",
            Provider::Gcp => "gcp",
            Provider::Azure => "azure",
            Provider::Oracle => "oracle_cloud",
        }
    }

    /// Whether DMI strings point at this provider.
    pub fn hinted_by(self, dmi: &Dmi) -> bool {
        let h = dmi.haystack();
        match self {
            Provider::Aws => {
                h.contains("amazon ec2")
                    || dmi.hypervisor_uuid.to_ascii_lowercase().starts_with("ec2")
                    || dmi.product_uuid.to_ascii_lowercase().starts_with("ec2")
            }
            Provider::Gcp => h.contains("google"),
            Provider::Azure => {
                h.contains("7783-7084-3265-9085-8269-3286-77")
                    || h.contains("microsoft corporation")
            }
            Provider::Oracle => h.contains("oraclecloud"),
        }
    }
}

/// How cloud discovery behaves.
#[derive(Debug, Clone)]
pub struct CloudOptions {
    pub enabled: bool,
    pub aws_endpoint: Option<String>,
    pub gcp_endpoint: Option<String>,
    pub azure_endpoint: Option<String>,
    pub oracle_endpoint: Option<String>,
    /// Probe every provider when DMI is unreadable (off by default).
    pub probe_without_dmi: bool,
    /// The budget for all probes together.
    pub timeout: Duration,
}

impl Default for CloudOptions {
    fn default() -> Self {
        CloudOptions {
            enabled: true,
            aws_endpoint: None,
            gcp_endpoint: None,
            azure_endpoint: None,
            oracle_endpoint: None,
            probe_without_dmi: false,
            timeout: Duration::from_millis(400),
        }
    }
}

impl CloudOptions {
    fn endpoint(&self, p: Provider) -> Option<&String> {
        match p {
            Provider::Aws => self.aws_endpoint.as_ref(),
            Provider::Gcp => self.gcp_endpoint.as_ref(),
            Provider::Azure => self.azure_endpoint.as_ref(),
            Provider::Oracle => self.oracle_endpoint.as_ref(),
        }
    }
}

/// Which providers to probe, and where; the bool says whether a failure deserves a warning.
pub fn candidates(dmi: &Dmi, opts: &CloudOptions) -> Vec<(Provider, String, bool)> {
    if !opts.enabled {
        return Vec::new();
    }
    let overridden: Vec<_> = Provider::ALL
        .iter()
        .filter_map(|p| {
            opts.endpoint(*p)
                .map(|e| (*p, e.trim_end_matches('/').to_string(), true))
        })
        .collect();
    if !overridden.is_empty() {
        return overridden;
    }
    Provider::ALL
        .iter()
        .filter_map(|p| {
            if !dmi.present {
                opts.probe_without_dmi
                    .then(|| (*p, DEFAULT_ENDPOINT.to_string(), false))
            } else if p.hinted_by(dmi) {
                Some((*p, DEFAULT_ENDPOINT.to_string(), true))
            } else {
                None
            }
        })
        .collect()
}

/// Probes the candidate providers concurrently and returns the attributes of the first (in
/// provider order) that answered properly within the budget; empty when none did.
pub fn detect(dmi: &Dmi, opts: &CloudOptions) -> Attrs {
    let cands = candidates(dmi, opts);
    if cands.is_empty() {
        return Attrs::new();
    }
    let deadline = Instant::now() + opts.timeout;
    let (tx, rx) = mpsc::channel();
    for (p, base, loud) in cands.iter().cloned() {
        let tx = tx.clone();
        let spawned = std::thread::Builder::new()
            .name(format!("telegen-cloud-{}", p.name()))
            .spawn(move || {
                let r = probe(p, &base, deadline);
                let _ = tx.send((p, base, loud, r));
            });
        if let Err(e) = spawned {
            warn_once(
                "cloud:spawn",
                format!("cannot start cloud probe thread: {e}"),
            );
        }
    }
    drop(tx);
    let mut found: Vec<(Provider, Attrs)> = Vec::new();
    let mut pending = cands.len();
    while pending > 0 {
        let left = deadline
            .checked_duration_since(Instant::now())
            .unwrap_or_default()
            + Duration::from_millis(20);
        match rx.recv_timeout(left) {
            Ok((p, base, loud, r)) => {
                pending -= 1;
                match r {
                    Ok(a) => found.push((p, a)),
                    Err(e) if loud => warn_once(
                        &format!("cloud:{}", p.name()),
                        format!(
                            "{} metadata at {base}: {e}; cloud attributes left out",
                            p.name()
                        ),
                    ),
                    Err(e) => log::debug!("{} metadata not available: {e}", p.name()),
                }
            }
            Err(_) => {
                for (p, base, loud) in &cands {
                    if *loud && !found.iter().any(|(f, _)| f == p) {
                        warn_once(
                            &format!("cloud:{}", p.name()),
                            format!("{} metadata at {base} did not answer in time", p.name()),
                        );
                    }
                }
                break;
            }
        }
    }
    found.sort_by_key(|(p, _)| *p);
    found.into_iter().next().map(|(_, a)| a).unwrap_or_default()
}

fn left(deadline: Instant, url: &str) -> Result<Duration, DiscoveryError> {
    deadline
        .checked_duration_since(Instant::now())
        .filter(|d| !d.is_zero())
        .ok_or_else(|| DiscoveryError::Http {
            url: url.to_string(),
            reason: "timed out".into(),
        })
}

fn get_ok(
    method: &str,
    url: &str,
    headers: &[(&str, &str)],
    deadline: Instant,
) -> Result<http::Response, DiscoveryError> {
    let r = http::request(method, url, headers, left(deadline, url)?)?;
    if !r.ok() {
        return Err(DiscoveryError::Http {
            url: url.to_string(),
            reason: format!("status {}", r.status),
        });
    }
    Ok(r)
}

fn json(r: &http::Response, what: &str) -> Result<Value, DiscoveryError> {
    let v: Value =
        serde_json::from_slice(&r.body).map_err(|e| DiscoveryError::parse(what, e.to_string()))?;
    if !v.is_object() {
        return Err(DiscoveryError::parse(what, "not a JSON object"));
    }
    Ok(v)
}

fn s(v: &Value, key: &str) -> String {
    match v.get(key) {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Number(n)) => n.to_string(),
        _ => String::new(),
    }
}

/// Asks one provider. Public for tests.
pub fn probe(p: Provider, base: &str, deadline: Instant) -> Result<Attrs, DiscoveryError> {
    match p {
        Provider::Aws => probe_aws(base, deadline),
        Provider::Gcp => probe_gcp(base, deadline),
        Provider::Azure => probe_azure(base, deadline),
        Provider::Oracle => probe_oracle(base, deadline),
    }
}

fn probe_aws(base: &str, deadline: Instant) -> Result<Attrs, DiscoveryError> {
    let token_url = format!("{base}/latest/api/token");
    let tok = get_ok(
        "PUT",
        &token_url,
        &[("X-aws-ec2-metadata-token-ttl-seconds", "60")],
        deadline,
    )?
    .text();
    let tok = tok.trim();
    if tok.is_empty() || tok.len() > 512 || tok.chars().any(|c| c.is_control()) {
        return Err(DiscoveryError::parse(
            "AWS IMDSv2 token",
            "empty or malformed",
        ));
    }
    let doc_url = format!("{base}/latest/dynamic/instance-identity/document");
    let r = get_ok(
        "GET",
        &doc_url,
        &[("X-aws-ec2-metadata-token", tok)],
        deadline,
    )?;
    let v = json(&r, "AWS instance identity document")?;
    if s(&v, "instanceId").is_empty() {
        return Err(DiscoveryError::parse(
            "AWS instance identity document",
            "no instanceId",
        ));
    }
    let mut a = Attrs::new();
    push_str(&mut a, "cloud.provider", "aws");
    push_str(&mut a, "cloud.platform", "aws_ec2");
    push_str(&mut a, "cloud.region", s(&v, "region"));
    push_str(&mut a, "cloud.availability_zone", s(&v, "availabilityZone"));
    push_str(&mut a, "cloud.account.id", s(&v, "accountId"));
    push_str(&mut a, "host.id", s(&v, "instanceId"));
    push_str(&mut a, "host.type", s(&v, "instanceType"));
    push_str(&mut a, "host.image.id", s(&v, "imageId"));
    Ok(a)
}

fn last_segment(s: &str) -> String {
    s.rsplit('/').next().unwrap_or_default().to_string()
}

fn probe_gcp(base: &str, deadline: Instant) -> Result<Attrs, DiscoveryError> {
    let h = [("Metadata-Flavor", "Google")];
    let url = format!("{base}/computeMetadata/v1/instance/?recursive=true");
    let r = get_ok("GET", &url, &h, deadline)?;
    if r.header("metadata-flavor") != Some("Google") {
        return Err(DiscoveryError::parse(
            "GCP metadata",
            "reply lacks Metadata-Flavor: Google",
        ));
    }
    let v = json(&r, "GCP instance metadata")?;
    let zone = last_segment(&s(&v, "zone"));
    if s(&v, "id").is_empty() || zone.is_empty() {
        return Err(DiscoveryError::parse(
            "GCP instance metadata",
            "no id or zone",
        ));
    }
    let project_url = format!("{base}/computeMetadata/v1/project/project-id");
    let project = match get_ok("GET", &project_url, &h, deadline) {
        Ok(r) => r.text().trim().to_string(),
        Err(e) => {
            warn_once("cloud:gcp:project", format!("GCP project id: {e}"));
            String::new()
        }
    };
    let region = zone
        .rsplit_once('-')
        .map(|(r, _)| r.to_string())
        .unwrap_or_default();
    let mut a = Attrs::new();
    push_str(&mut a, "cloud.provider", "gcp");
    push_str(&mut a, "cloud.platform", "gcp_compute_engine");
    push_str(&mut a, "cloud.region", region);
    push_str(&mut a, "cloud.availability_zone", zone);
    push_str(&mut a, "cloud.account.id", project);
    push_str(&mut a, "host.id", s(&v, "id"));
    push_str(&mut a, "host.type", last_segment(&s(&v, "machineType")));
    push_str(&mut a, "gcp.gce.instance.name", s(&v, "name"));
    Ok(a)
}

fn probe_azure(base: &str, deadline: Instant) -> Result<Attrs, DiscoveryError> {
    let url = format!("{base}/metadata/instance/compute?api-version=2021-02-01&format=json");
    let r = get_ok("GET", &url, &[("Metadata", "true")], deadline)?;
    let v = json(&r, "Azure instance metadata")?;
    if s(&v, "vmId").is_empty() {
        return Err(DiscoveryError::parse("Azure instance metadata", "no vmId"));
    }
    let mut a = Attrs::new();
    push_str(&mut a, "cloud.provider", "azure");
    push_str(&mut a, "cloud.platform", "azure_vm");
    push_str(&mut a, "cloud.region", s(&v, "location"));
    push_str(&mut a, "cloud.availability_zone", s(&v, "zone"));
    push_str(&mut a, "cloud.account.id", s(&v, "subscriptionId"));
    push_str(&mut a, "host.id", s(&v, "vmId"));
    push_str(&mut a, "host.type", s(&v, "vmSize"));
    push_str(&mut a, "azure.vm.name", s(&v, "name"));
    push_str(
        &mut a,
        "azure.resourcegroup.name",
        s(&v, "resourceGroupName"),
    );
    Ok(a)
}

fn probe_oracle(base: &str, deadline: Instant) -> Result<Attrs, DiscoveryError> {
    let url = format!("{base}/opc/v2/instance/");
    let r = get_ok("GET", &url, &[("Authorization", "Bearer Oracle")], deadline)?;
    let v = json(&r, "Oracle instance metadata")?;
    if s(&v, "id").is_empty() {
        return Err(DiscoveryError::parse("Oracle instance metadata", "no id"));
    }
    let region = match s(&v, "canonicalRegionName") {
        r if r.is_empty() => s(&v, "region"),
        r => r,
    };
    let account = match s(&v, "tenantId") {
        t if t.is_empty() => s(&v, "compartmentId"),
        t => t,
    };
    let mut a = Attrs::new();
    push_str(&mut a, "cloud.provider", "oracle_cloud");
    push_str(&mut a, "cloud.platform", "oracle_cloud_compute");
    push_str(&mut a, "cloud.region", region);
    push_str(
        &mut a,
        "cloud.availability_zone",
        s(&v, "availabilityDomain"),
    );
    push_str(&mut a, "cloud.account.id", account);
    push_str(&mut a, "host.id", s(&v, "id"));
    push_str(&mut a, "host.type", s(&v, "shape"));
    Ok(a)
}

/// Whether the attributes name a cloud.
pub fn has_cloud(a: &Attrs) -> bool {
    a.iter()
        .any(|(k, v)| *k == "cloud.provider" && matches!(v, AttrValue::Str(_)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    fn dmi(name: &str) -> Dmi {
        Dmi::read(
            &PathBuf::from(env!("CARGO_MANIFEST_DIR"))
                .join("tests/fixtures/discovery/sys")
                .join(name),
        )
    }

    #[test]
    fn dmi_rules_providers_in_and_out() {
        let o = CloudOptions::default();
        let names = |d: &Dmi| {
            candidates(d, &o)
                .into_iter()
                .map(|c| c.0)
                .collect::<Vec<_>>()
        };
        assert_eq!(names(&dmi("aws")), vec![Provider::Aws]);
        assert_eq!(names(&dmi("gcp")), vec![Provider::Gcp]);
        assert_eq!(names(&dmi("azure")), vec![Provider::Azure]);
        assert_eq!(names(&dmi("oracle")), vec![Provider::Oracle]);
        assert!(names(&dmi("baremetal")).is_empty());
        assert!(
            names(&dmi("does-not-exist")).is_empty(),
            "no DMI: no blind probe by default"
        );
        let all = CloudOptions {
            probe_without_dmi: true,
            ..CloudOptions::default()
        };
        assert_eq!(candidates(&dmi("does-not-exist"), &all).len(), 4);
    }

    #[test]
    fn disabled_and_overridden() {
        let mut o = CloudOptions {
            enabled: false,
            ..Default::default()
        };
        assert!(candidates(&dmi("aws"), &o).is_empty());
        o.enabled = true;
        o.gcp_endpoint = Some("http://127.0.0.1:1/".into());
        let c = candidates(&dmi("aws"), &o);
        assert_eq!(
            c,
            vec![(Provider::Gcp, "http://127.0.0.1:1".to_string(), true)]
        );
    }

    #[test]
    fn baremetal_costs_nothing() {
        // No DMI cloud name: not one endpoint is a candidate, so nothing is probed.
        assert!(candidates(&dmi("baremetal"), &CloudOptions::default()).is_empty());
        assert!(detect(&dmi("baremetal"), &CloudOptions::default()).is_empty());
    }
}
