//! The deployment files under `deploy/` agree with each other and with the
//! code: every YAML parses, Kubernetes objects reference what exists
//! (selectors, ConfigMaps, Secrets, named ports, HPA/PDB targets), compose
//! services reference what exists (depends_on, mounted files, volumes,
//! build files), Prometheus scrapes real services on real ports, the
//! Dockerfiles copy files that exist and build the binaries Cargo declares,
//! and the gateway configs pass routemesh-common's own validation and name
//! the pool, stream, subjects, certificates and heads the rest uses.
//!
//! The validators that need tools (nats-server, kustomize, schemas,
//! promtool, `routemesh check-config`) run in `scripts/validate-deploy.sh`.
//! Each checker returns its problems, so the `*_catches_*` tests can break a
//! reference and see it reported.

// The helpers (reading the checkout's files) are test code outside #[test]
// functions: a broken checkout should stop the test with the file's name.
#![allow(clippy::expect_used)]

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use serde::Deserialize;
use serde_yaml_ng::Value;

/// The repository root (this package is `deploy/checks/`).
fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .ancestors()
        .nth(2)
        .expect("deploy/checks/ has a grandparent")
        .to_path_buf()
}

fn read(rel: &str) -> String {
    std::fs::read_to_string(repo().join(rel)).unwrap_or_else(|e| panic!("cannot read {rel}: {e}"))
}

fn yaml_docs(text: &str, what: &str) -> Vec<Value> {
    serde_yaml_ng::Deserializer::from_str(text)
        .map(|d| Value::deserialize(d).unwrap_or_else(|e| panic!("{what}: {e}")))
        .filter(|v| !v.is_null())
        .collect()
}

/// `v["a"]["b"]…`, or Null.
fn at<'a>(v: &'a Value, path: &[&str]) -> &'a Value {
    static NULL: Value = Value::Null;
    path.iter().fold(v, |v, k| v.get(*k).unwrap_or(&NULL))
}

fn s(v: &Value) -> &str {
    v.as_str().unwrap_or("")
}

fn seq(v: &Value) -> &[Value] {
    v.as_sequence().map(|s| s.as_slice()).unwrap_or(&[])
}

fn labels(v: &Value) -> BTreeMap<String, String> {
    v.as_mapping()
        .map(|m| {
            m.iter()
                .map(|(k, v)| (s(k).to_owned(), s(v).to_owned()))
                .collect()
        })
        .unwrap_or_default()
}

fn selects(selector: &BTreeMap<String, String>, labels: &BTreeMap<String, String>) -> bool {
    !selector.is_empty() && selector.iter().all(|(k, v)| labels.get(k) == Some(v))
}

/// Every `[[bin]]` name of the workspace's Cargo.toml files.
fn cargo_bins() -> BTreeSet<String> {
    let mut bins = BTreeSet::new();
    let mut manifests = vec![repo().join("loadtest/Cargo.toml")];
    for e in std::fs::read_dir(repo().join("crates")).expect("crates/") {
        manifests.push(e.expect("entry").path().join("Cargo.toml"));
    }
    for m in manifests {
        let Ok(text) = std::fs::read_to_string(&m) else {
            continue;
        };
        let mut in_bin = false;
        for line in text.lines().map(str::trim) {
            if line.starts_with('[') {
                in_bin = line == "[[bin]]";
            } else if in_bin
                && let Some(name) = line.strip_prefix("name").map(str::trim)
                && let Some(name) = name.strip_prefix('=')
            {
                bins.insert(name.trim().trim_matches('"').to_owned());
            }
        }
    }
    bins
}

/// The workspace's members: the root Cargo.toml's `members = [ … ]`, one a line.
fn workspace_members() -> Vec<String> {
    read("Cargo.toml")
        .lines()
        .map(str::trim)
        .skip_while(|l| *l != "members = [")
        .skip(1)
        .take_while(|l| *l != "]")
        .map(|l| l.trim_end_matches(',').trim_matches('"').to_owned())
        .collect()
}

/// The files gen-certs.sh writes (`*.pem`), from its own loop and lines.
fn generated_certs() -> BTreeSet<String> {
    let script = read("deploy/nats/gen-certs.sh");
    let mut names: BTreeSet<String> = ["ca.pem", "ca-key.pem", "server.pem", "server-key.pem"]
        .into_iter()
        .filter(|n| script.contains(&format!("$out/{n}")) || script.contains("sign server"))
        .map(String::from)
        .collect();
    let who = script
        .lines()
        .find_map(|l| l.trim().strip_prefix("for who in "))
        .expect("gen-certs.sh: `for who in …` loop");
    for w in who.trim_end_matches("; do").split_whitespace() {
        names.insert(format!("{w}.pem"));
        names.insert(format!("{w}-key.pem"));
    }
    names
}

// ---- Kubernetes ------------------------------------------------------------

struct K8s {
    objects: Vec<Value>,
    configmaps: BTreeSet<String>,
    secrets: BTreeSet<String>,
}

fn load_k8s() -> (K8s, Vec<String>) {
    let mut problems = Vec::new();
    let kust = &yaml_docs(&read("deploy/k8s/kustomization.yaml"), "kustomization.yaml")[0];
    let mut objects = Vec::new();
    for r in seq(&kust["resources"]) {
        let rel = format!("deploy/k8s/{}", s(r));
        if !repo().join(&rel).is_file() {
            problems.push(format!("kustomization resource {rel} does not exist"));
            continue;
        }
        objects.extend(yaml_docs(&read(&rel), &rel));
    }
    let mut configmaps = BTreeSet::new();
    for g in seq(&kust["configMapGenerator"]) {
        configmaps.insert(s(&g["name"]).to_owned());
        for f in seq(&g["files"]) {
            let rel = format!("deploy/k8s/{}", s(f).rsplit('=').next().unwrap_or(""));
            if !repo().join(&rel).is_file() {
                problems.push(format!("configMapGenerator file {rel} does not exist"));
            }
        }
    }
    let mut secrets = BTreeSet::new();
    for o in &objects {
        match s(&o["kind"]) {
            "ConfigMap" => configmaps.insert(s(at(o, &["metadata", "name"])).to_owned()),
            "Secret" => secrets.insert(s(at(o, &["metadata", "name"])).to_owned()),
            _ => false,
        };
    }
    // Secrets made outside kustomize, by the script the README tells to run.
    for line in read("deploy/k8s/create-nats-secrets.sh").lines() {
        if let Some(rest) = line.strip_prefix("secret ") {
            secrets.insert(rest.split_whitespace().next().unwrap_or("").to_owned());
        }
    }
    (
        K8s {
            objects,
            configmaps,
            secrets,
        },
        problems,
    )
}

fn name(o: &Value) -> String {
    format!("{} {}", s(&o["kind"]), s(at(o, &["metadata", "name"])))
}

fn pod_spec(o: &Value) -> Option<&Value> {
    match s(&o["kind"]) {
        "Deployment" | "StatefulSet" | "Job" => Some(at(o, &["spec", "template", "spec"])),
        _ => None,
    }
}

fn container_ports(pod: &Value) -> BTreeMap<String, u64> {
    seq(&pod["containers"])
        .iter()
        .flat_map(|c| seq(&c["ports"]))
        .map(|p| {
            (
                s(&p["name"]).to_owned(),
                p["containerPort"].as_u64().unwrap_or(0),
            )
        })
        .collect()
}

fn template_labels(o: &Value) -> BTreeMap<String, String> {
    labels(at(o, &["spec", "template", "metadata", "labels"]))
}

fn check_k8s(k: &K8s, bins: &BTreeSet<String>) -> Vec<String> {
    let mut problems = Vec::new();
    let workloads: Vec<&Value> = k.objects.iter().filter(|o| pod_spec(o).is_some()).collect();
    for o in &workloads {
        let pod = pod_spec(o).expect("workload");
        let sel = labels(at(o, &["spec", "selector", "matchLabels"]));
        if s(&o["kind"]) != "Job" && !selects(&sel, &template_labels(o)) {
            problems.push(format!(
                "{}: selector {sel:?} does not match its pod labels",
                name(o)
            ));
        }
        for v in seq(&pod["volumes"]) {
            let cm = s(at(v, &["configMap", "name"]));
            if !cm.is_empty() && !k.configmaps.contains(cm) {
                problems.push(format!(
                    "{}: ConfigMap {cm} is not in the kustomization",
                    name(o)
                ));
            }
            let sec = s(at(v, &["secret", "secretName"]));
            if !sec.is_empty() && !k.secrets.contains(sec) {
                problems.push(format!("{}: Secret {sec} is neither in the kustomization nor made by create-nats-secrets.sh", name(o)));
            }
        }
        let ports = container_ports(pod);
        let volumes: BTreeSet<&str> = seq(&pod["volumes"]).iter().map(|v| s(&v["name"])).collect();
        let claims: BTreeSet<&str> = seq(at(o, &["spec", "volumeClaimTemplates"]))
            .iter()
            .map(|c| s(at(c, &["metadata", "name"])))
            .collect();
        for c in seq(&pod["containers"]) {
            for e in seq(&c["envFrom"]) {
                let sec = s(at(e, &["secretRef", "name"]));
                if !sec.is_empty() && !k.secrets.contains(sec) {
                    problems.push(format!("{}: envFrom Secret {sec} does not exist", name(o)));
                }
            }
            for m in seq(&c["volumeMounts"]) {
                let v = s(&m["name"]);
                if !volumes.contains(v) && !claims.contains(v) {
                    problems.push(format!(
                        "{}: mounts volume {v}, which is not declared",
                        name(o)
                    ));
                }
            }
            for probe in ["readinessProbe", "livenessProbe", "startupProbe"] {
                let port = &c[probe]["httpGet"]["port"];
                if let Some(p) = port.as_str()
                    && !ports.contains_key(p)
                {
                    problems.push(format!(
                        "{}: {probe} uses port `{p}`, not a container port",
                        name(o)
                    ));
                }
            }
            let image = s(&c["image"]);
            let cmd = seq(&c["command"]).first().map(s).unwrap_or("");
            if image.starts_with("routemesh") && !bins.contains(cmd) {
                problems.push(format!(
                    "{}: command `{cmd}` is not a Cargo [[bin]] name",
                    name(o)
                ));
            }
        }
    }
    let find = |kind: &str, n: &str| {
        k.objects
            .iter()
            .any(|o| s(&o["kind"]) == kind && s(at(o, &["metadata", "name"])) == n)
    };
    for o in &k.objects {
        match s(&o["kind"]) {
            "Service" => {
                let sel = labels(at(o, &["spec", "selector"]));
                let targets: Vec<&&Value> = workloads
                    .iter()
                    .filter(|w| selects(&sel, &template_labels(w)))
                    .collect();
                if targets.is_empty() {
                    problems.push(format!("{}: selector {sel:?} matches no workload", name(o)));
                }
                for p in seq(at(o, &["spec", "ports"])) {
                    if let Some(tp) = p["targetPort"].as_str() {
                        for w in &targets {
                            if !container_ports(pod_spec(w).expect("workload")).contains_key(tp) {
                                problems.push(format!(
                                    "{}: targetPort `{tp}` is not a port of {}",
                                    name(o),
                                    name(w)
                                ));
                            }
                        }
                    }
                }
            }
            "PodDisruptionBudget" => {
                let sel = labels(at(o, &["spec", "selector", "matchLabels"]));
                if !workloads.iter().any(|w| selects(&sel, &template_labels(w))) {
                    problems.push(format!("{}: selector {sel:?} matches no workload", name(o)));
                }
            }
            "HorizontalPodAutoscaler" => {
                let t = at(o, &["spec", "scaleTargetRef"]);
                if !find(s(&t["kind"]), s(&t["name"])) {
                    problems.push(format!(
                        "{}: target {} {} does not exist",
                        name(o),
                        s(&t["kind"]),
                        s(&t["name"])
                    ));
                }
                for m in seq(at(o, &["spec", "metrics"])) {
                    let metric = s(at(m, &["pods", "metric", "name"]));
                    if !metric.is_empty()
                        && metric != routemesh_classifier_worker::metrics::WORKER_QUEUE_DEPTH
                    {
                        problems.push(format!(
                            "{}: metric {metric} is not a worker metric",
                            name(o)
                        ));
                    }
                }
            }
            "StatefulSet" => {
                let svc = s(at(o, &["spec", "serviceName"]));
                let headless = k.objects.iter().any(|x| {
                    s(&x["kind"]) == "Service"
                        && s(at(x, &["metadata", "name"])) == svc
                        && s(at(x, &["spec", "clusterIP"])) == "None"
                });
                if !headless {
                    problems.push(format!(
                        "{}: serviceName {svc} is not a headless Service",
                        name(o)
                    ));
                }
            }
            _ => {}
        }
    }
    problems
}

#[test]
fn kubernetes_manifests_reference_what_exists() {
    let (k, mut problems) = load_k8s();
    problems.extend(check_k8s(&k, &cargo_bins()));
    assert!(
        problems.is_empty(),
        "deploy/k8s:\n  {}",
        problems.join("\n  ")
    );
    // The KEDA alternative (a CRD, outside the kustomization) scales the same Deployment.
    let keda = &yaml_docs(&read("deploy/k8s/optional/keda-scaledobject.yaml"), "keda")[0];
    let target = s(at(keda, &["spec", "scaleTargetRef", "name"]));
    assert!(
        k.objects
            .iter()
            .any(|o| s(&o["kind"]) == "Deployment" && s(at(o, &["metadata", "name"])) == target)
    );
    let query = s(&seq(at(keda, &["spec", "triggers"]))[0]["metadata"]["query"]);
    assert!(
        query.contains(routemesh_classifier_worker::metrics::WORKER_QUEUE_DEPTH),
        "{query}"
    );
}

#[test]
fn k8s_checker_catches_broken_references() {
    let (k, _) = load_k8s();
    let bins = cargo_bins();
    assert!(check_k8s(&k, &bins).is_empty());
    let mutate = |f: &dyn Fn(&mut Value) -> bool| {
        let mut k2 = K8s {
            objects: k.objects.clone(),
            configmaps: k.configmaps.clone(),
            secrets: k.secrets.clone(),
        };
        assert!(k2.objects.iter_mut().any(f), "nothing to mutate");
        check_k8s(&k2, &bins)
    };
    // A Service whose selector no longer matches its Deployment.
    let p = mutate(&|o| {
        if name(o) != "Service routemesh-gateway" {
            return false;
        }
        o["spec"]["selector"]["app.kubernetes.io/name"] = Value::from("routemesh-gatewy");
        true
    });
    assert!(p.iter().any(|p| p.contains("matches no workload")), "{p:?}");
    // A Deployment mounting a ConfigMap that the kustomization does not make.
    let p = mutate(&|o| {
        if name(o) != "Deployment routemesh-gateway" {
            return false;
        }
        o["spec"]["template"]["spec"]["volumes"][0]["configMap"]["name"] =
            Value::from("gateway-cfg");
        true
    });
    assert!(
        p.iter().any(|p| p.contains("ConfigMap gateway-cfg")),
        "{p:?}"
    );
    // An HPA aimed at a Deployment that does not exist.
    let p = mutate(&|o| {
        if s(&o["kind"]) != "HorizontalPodAutoscaler" {
            return false;
        }
        o["spec"]["scaleTargetRef"]["name"] = Value::from("routemesh-worker");
        true
    });
    assert!(p.iter().any(|p| p.contains("does not exist")), "{p:?}");
}

// ---- compose ---------------------------------------------------------------

fn check_compose(c: &Value, bins: &BTreeSet<String>) -> Vec<String> {
    let mut problems = Vec::new();
    let dir = repo().join("deploy/compose");
    let services = c["services"].as_mapping().expect("services");
    let names: BTreeSet<&str> = services.keys().map(s).collect();
    let volumes: BTreeSet<&str> = c["volumes"]
        .as_mapping()
        .map(|m| m.keys().map(s).collect())
        .unwrap_or_default();
    for (n, svc) in services {
        let n = s(n);
        let deps: Vec<&str> = match &svc["depends_on"] {
            Value::Mapping(m) => m.keys().map(s).collect(),
            Value::Sequence(q) => q.iter().map(s).collect(),
            _ => Vec::new(),
        };
        for d in deps {
            if !names.contains(d) {
                problems.push(format!("{n}: depends_on {d}, which is not a service"));
            }
        }
        for v in seq(&svc["volumes"]) {
            let src = s(v).split(':').next().unwrap_or("");
            if src.starts_with('.') || src.starts_with('/') {
                if !dir.join(src).exists() {
                    problems.push(format!("{n}: mounts {src}, which does not exist"));
                }
            } else if !volumes.contains(src) {
                problems.push(format!("{n}: volume {src} is not declared under volumes:"));
            }
        }
        if let Some(ctx) = svc["build"]["context"].as_str() {
            let df = dir.join(ctx).join(s(&svc["build"]["dockerfile"]));
            if !df.is_file() {
                problems.push(format!("{n}: build file {} does not exist", df.display()));
            }
        }
        if s(&svc["image"]).starts_with("routemesh") {
            let first = seq(&svc["entrypoint"])
                .first()
                .or(seq(&svc["command"]).first())
                .map(s)
                .unwrap_or("");
            if !bins.contains(first) && first != "gen-certs.sh" {
                problems.push(format!("{n}: runs `{first}`, not a Cargo [[bin]] name"));
            }
        }
    }
    problems
}

fn compose() -> Value {
    let mut c = yaml_docs(&read("deploy/compose/compose.yaml"), "compose.yaml").remove(0);
    // Merge keys nest (x-gateway merges x-routemesh-image): apply until none is left.
    for _ in 0..4 {
        c.apply_merge().expect("compose.yaml: merge keys");
    }
    assert!(
        !serde_yaml_ng::to_string(&c).expect("yaml").contains("<<"),
        "compose.yaml: merge keys left after merging"
    );
    c
}

/// `--flag VALUE` or `--flag=VALUE` in an argument list.
fn flag<'a>(args: &'a [Value], flag: &str) -> Vec<&'a str> {
    let mut out = Vec::new();
    for (i, a) in args.iter().enumerate() {
        let a = s(a);
        if a == flag {
            out.push(args.get(i + 1).map(s).unwrap_or(""));
        } else if let Some(v) = a.strip_prefix(flag).and_then(|r| r.strip_prefix('=')) {
            out.push(v);
        }
    }
    out
}

#[test]
fn compose_services_reference_what_exists() {
    let c = compose();
    let problems = check_compose(&c, &cargo_bins());
    assert!(
        problems.is_empty(),
        "deploy/compose/compose.yaml:\n  {}",
        problems.join("\n  ")
    );
}

#[test]
fn compose_checker_catches_broken_references() {
    let bins = cargo_bins();
    let mut c = compose();
    c["services"]["gateway-1"]["depends_on"]["nats-4"] = Value::from("x");
    c["services"]["prometheus"]["volumes"][0] =
        Value::from("./prometheus.yaml:/etc/prometheus/prometheus.yml:ro");
    c["services"]["fake-math"]["command"][0] = Value::from("fake_upstream");
    let p = check_compose(&c, &bins);
    assert!(p.iter().any(|p| p.contains("nats-4")), "{p:?}");
    assert!(p.iter().any(|p| p.contains("prometheus.yaml")), "{p:?}");
    assert!(p.iter().any(|p| p.contains("`fake_upstream`")), "{p:?}");
}

#[test]
fn prometheus_scrapes_real_services_on_their_metrics_ports() {
    let c = compose();
    let prom = &yaml_docs(&read("deploy/compose/prometheus.yml"), "prometheus.yml")[0];
    let gateway = gateway_config("deploy/compose/gateway.yaml");
    let gateway_port = gateway
        .metrics
        .expect("gateway.yaml: metrics")
        .listen
        .port();
    let mut jobs = 0;
    for job in seq(&prom["scrape_configs"]) {
        for t in seq(&seq(&job["static_configs"])
            .first()
            .cloned()
            .unwrap_or(Value::Null)["targets"])
        {
            let (host, port) = s(t).rsplit_once(':').expect("host:port");
            let svc = &c["services"][host];
            assert!(
                !svc.is_null(),
                "prometheus target {host} is not a compose service"
            );
            assert_eq!(
                svc["command"][1],
                Value::from("serve"),
                "{host} is not a gateway"
            );
            assert_eq!(
                port,
                gateway_port.to_string(),
                "{host}: gateway metrics port"
            );
            jobs += 1;
        }
        for d in seq(&job["dns_sd_configs"]) {
            let host = s(&seq(&d["names"])[0]);
            let svc = &c["services"][host];
            assert!(
                !svc.is_null(),
                "prometheus dns_sd name {host} is not a compose service"
            );
            let listen = flag(seq(&svc["command"]), "--metrics-listen");
            let port = listen
                .first()
                .and_then(|l| l.rsplit(':').next())
                .unwrap_or("");
            assert_eq!(
                d["port"].as_u64().map(|p| p.to_string()).as_deref(),
                Some(port),
                "{host}: worker metrics port"
            );
            jobs += 1;
        }
    }
    assert!(jobs >= 4, "two gateways and two worker kinds are scraped");
}

// ---- gateway configs -------------------------------------------------------

fn gateway_config(rel: &str) -> routemesh_common::config::Config {
    let path = repo().join(rel);
    routemesh_common::config::parse(&read(rel), path.parent().expect("dir"))
        .unwrap_or_else(|e| panic!("{rel} fails routemesh's config validation: {e}"))
}

#[test]
fn gateway_configs_pass_validation_and_match_the_mesh() {
    use routemesh_common::config::{LearningShare, Transport};
    // One config serves both: the names (nats, fake-*) are compose services
    // and Kubernetes Services alike.
    assert_eq!(
        read("deploy/compose/gateway.yaml"),
        read("deploy/k8s/config/gateway.yaml"),
        "deploy/k8s/config/gateway.yaml must be a copy of deploy/compose/gateway.yaml"
    );
    assert_eq!(
        read("deploy/nats/auth.conf"),
        read("deploy/k8s/nats/auth.conf"),
        "deploy/k8s/nats/auth.conf must be a copy of deploy/nats/auth.conf"
    );
    assert_eq!(
        read("deploy/nats/outcome-stream.json"),
        read("deploy/k8s/nats/outcome-stream.json")
    );

    let cfg = gateway_config("deploy/compose/gateway.yaml");
    let c = compose();
    let (k, _) = load_k8s();
    let certs = generated_certs();

    let Transport::Nats { pool, nats } = &cfg.classifier.transport else {
        panic!("the mesh gateway embeds over NATS");
    };
    // Workers serve the gateway's pool, in compose and in Kubernetes.
    for w in ["worker-cpu", "worker-gpu"] {
        assert_eq!(
            flag(seq(&c["services"][w]["command"]), "--pool"),
            [pool.as_str()],
            "compose {w}"
        );
    }
    for o in k.objects.iter().filter(|o| {
        s(at(o, &["metadata", "name"])).starts_with("routemesh-worker-")
            && s(&o["kind"]) == "Deployment"
    }) {
        let args = seq(&at(o, &["spec", "template", "spec", "containers"])[0]["args"]);
        assert_eq!(flag(args, "--pool"), [pool.as_str()], "{}", name(o));
        for h in flag(args, "--classifier") {
            assert_heads_path(h.split_once('=').expect("NAME=FOLDER").1);
        }
    }
    // NATS: the `nats` name, and certificates gen-certs.sh makes.
    assert_eq!(nats.url, "tls://nats:4222");
    let (cert, key) = nats.tls_client_cert.clone().expect("client certificate");
    for f in [nats.tls_ca_file.clone().expect("ca"), cert, key] {
        let file = f
            .strip_prefix("/certs")
            .unwrap_or_else(|_| panic!("{} not under /certs", f.display()));
        assert!(
            certs.contains(file.to_str().unwrap_or("")),
            "{} is not made by gen-certs.sh ({certs:?})",
            f.display()
        );
    }
    for h in flag(seq(&c["services"]["worker-cpu"]["command"]), "--classifier") {
        assert_heads_path(h.split_once('=').expect("NAME=FOLDER").1);
    }
    for d in &cfg.signals.classifiers {
        assert_heads_path(d.path.to_str().unwrap_or(""));
    }
    // The outcome stream: the name and subjects the gateway uses.
    let LearningShare::JetStream { stream, .. } = &cfg.learning.share else {
        panic!("gateways share outcomes through JetStream");
    };
    let js: serde_json::Value =
        serde_json::from_str(&read("deploy/nats/outcome-stream.json")).expect("json");
    assert_eq!(js["name"], serde_json::Value::from(stream.as_str()));
    assert_eq!(
        js["subjects"],
        serde_json::json!([format!(
            "{}.>",
            routemesh_common::wire::OUTCOME_SUBJECT_PREFIX
        )])
    );
    let auth = read("deploy/nats/auth.conf");
    for needed in [
        format!("\"{}.>\"", routemesh_common::wire::CLASSIFY_SUBJECT_PREFIX),
        format!("\"{}.>\"", routemesh_common::wire::OUTCOME_SUBJECT_PREFIX),
        format!("STREAM.CREATE.{stream}\""),
        format!(
            "\"{}.* *\"",
            routemesh_common::wire::CLASSIFY_SUBJECT_PREFIX
        ),
    ] {
        assert!(auth.contains(&needed), "auth.conf does not grant {needed}");
    }
    // Upstreams are the fake services, on the ports they listen on.
    for u in &cfg.upstreams {
        for e in &u.endpoints {
            let hostport = e
                .url
                .trim_start_matches("http://")
                .split('/')
                .next()
                .unwrap_or("");
            let (host, port) = hostport.split_once(':').expect("host:port");
            let listen = flag(seq(&c["services"][host]["command"]), "--listen");
            assert_eq!(
                listen,
                [format!("0.0.0.0:{port}").as_str()],
                "compose service {host}"
            );
            let svc = k
                .objects
                .iter()
                .find(|o| name(o) == format!("Service {host}"));
            let svc = svc.unwrap_or_else(|| panic!("no Kubernetes Service {host}"));
            assert_eq!(
                at(svc, &["spec", "ports"])[0]["port"].as_u64(),
                port.parse().ok(),
                "Service {host}"
            );
        }
    }
    // The gateway Deployment exposes what the config listens on.
    let gw = k
        .objects
        .iter()
        .find(|o| name(o) == "Deployment routemesh-gateway")
        .expect("gateway Deployment");
    let ports = container_ports(pod_spec(gw).expect("pod"));
    assert_eq!(
        ports.get("http"),
        Some(&u64::from(cfg.server.listen.port()))
    );
    assert_eq!(
        ports.get("metrics"),
        Some(&u64::from(cfg.metrics.expect("metrics").listen.port()))
    );
    // The API keys and admin token come from the environment the Secret sets.
    let auth_cfg = cfg.auth.expect("auth");
    let secret = k
        .objects
        .iter()
        .find(|o| name(o) == "Secret routemesh-auth")
        .expect("Secret routemesh-auth");
    for var in [auth_cfg.keys_env.clone(), auth_cfg.admin_token_env.clone()]
        .into_iter()
        .flatten()
    {
        assert!(
            !secret["stringData"][var.as_str()].is_null(),
            "Secret routemesh-auth lacks {var}"
        );
        assert!(
            !c["services"]["gateway-1"]["environment"][var.as_str()].is_null(),
            "compose gateway lacks {var}"
        );
    }
}

/// A path in the image under /opt/routemesh/heads is a folder of heads/.
fn assert_heads_path(p: &str) {
    let rel = p
        .strip_prefix("/opt/routemesh/")
        .unwrap_or_else(|| panic!("{p} is not in the image"));
    assert!(
        repo().join(rel).join("head.json").is_file(),
        "{p}: {rel}/head.json is not in the repository"
    );
}

// ---- Dockerfiles -------------------------------------------------------------

fn check_dockerfile(text: &str, bins: &BTreeSet<String>) -> Vec<String> {
    let mut problems = Vec::new();
    let ignored: Vec<String> = read(".dockerignore")
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(String::from)
        .collect();
    // Join continuation lines.
    let joined = text.replace("\\\n", " ");
    let mut built = BTreeSet::new();
    let mut copied = Vec::new();
    for line in joined.lines().map(str::trim) {
        let words: Vec<&str> = line.split_whitespace().collect();
        match words.first() {
            Some(&"COPY") if !words.iter().any(|w| w.starts_with("--from")) => {
                for src in &words[1..words.len() - 1] {
                    if !repo().join(src).exists() {
                        problems.push(format!("COPY {src}: not in the repository"));
                    }
                    if ignored.iter().any(|i| i == src) {
                        problems.push(format!("COPY {src}: excluded by .dockerignore"));
                    }
                    copied.push(src.trim_end_matches('/').to_owned());
                }
            }
            Some(&"RUN") => {
                for (i, w) in words.iter().enumerate() {
                    if *w == "--bin" {
                        let b = words.get(i + 1).copied().unwrap_or("");
                        if !bins.contains(b) {
                            problems
                                .push(format!("cargo build --bin {b}: not a Cargo [[bin]] name"));
                        }
                        built.insert(b.to_owned());
                    }
                    if *w == "--features" {
                        let f = words.get(i + 1).copied().unwrap_or("");
                        let manifest = read("crates/classifier-worker/Cargo.toml");
                        if !manifest.contains(&format!("\n{f} = [")) {
                            problems.push(format!(
                                "--features {f}: not a feature of the classifier worker"
                            ));
                        }
                    }
                    if let Some(b) = w.strip_prefix("target/release/")
                        && !built.contains(b)
                    {
                        problems.push(format!(
                            "copies target/release/{b}, which this RUN does not build"
                        ));
                    }
                }
            }
            _ => {}
        }
    }
    if built.is_empty() {
        problems.push("no `cargo build --bin …` found".into());
    }
    // Cargo loads the whole workspace, so the build needs every member's manifest.
    for m in workspace_members() {
        if !copied
            .iter()
            .any(|c| m == *c || m.starts_with(&format!("{c}/")))
        {
            problems.push(format!(
                "workspace member {m} is not copied: cargo cannot load the workspace"
            ));
        }
    }
    problems
}

#[test]
fn dockerfiles_copy_what_exists_and_build_real_binaries() {
    let bins = cargo_bins();
    for f in ["deploy/docker/Dockerfile", "deploy/docker/Dockerfile.cuda"] {
        let problems = check_dockerfile(&read(f), &bins);
        assert!(problems.is_empty(), "{f}:\n  {}", problems.join("\n  "));
    }
    // The compose file builds with these Dockerfiles.
    let c = compose();
    for (svc, df) in [
        ("gateway-1", "deploy/docker/Dockerfile"),
        ("worker-gpu", "deploy/docker/Dockerfile.cuda"),
    ] {
        assert_eq!(c["services"][svc]["build"]["dockerfile"], Value::from(df));
    }
}

#[test]
fn dockerfile_checker_catches_broken_references() {
    let bins = cargo_bins();
    let text = read("deploy/docker/Dockerfile")
        .replace("--bin fake-upstream", "--bin fake_upstream")
        .replace("COPY heads ", "COPY head ")
        .replace("COPY deploy/checks deploy/checks\n", "");
    let p = check_dockerfile(&text, &bins);
    assert!(
        p.iter()
            .any(|p| p.contains("workspace member deploy/checks")),
        "{p:?}"
    );
    assert!(p.iter().any(|p| p.contains("--bin fake_upstream")), "{p:?}");
    assert!(p.iter().any(|p| p.contains("COPY head:")), "{p:?}");
    assert!(
        p.iter().any(|p| p.contains("target/release/fake-upstream")),
        "{p:?}"
    );
}

#[test]
fn every_yaml_file_under_deploy_parses() {
    fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
        for e in std::fs::read_dir(dir).expect("read_dir").flatten() {
            let p = e.path();
            if p.is_dir() {
                if p.file_name().is_some_and(|n| n != "certs") {
                    walk(&p, out);
                }
            } else if p.extension().is_some_and(|x| x == "yaml" || x == "yml") {
                out.push(p);
            }
        }
    }
    let mut files = Vec::new();
    walk(&repo().join("deploy"), &mut files);
    assert!(files.len() >= 12, "found only {files:?}");
    for f in files {
        let text = std::fs::read_to_string(&f).expect("read");
        assert!(
            !yaml_docs(&text, &f.display().to_string()).is_empty(),
            "{} is empty",
            f.display()
        );
    }
}
