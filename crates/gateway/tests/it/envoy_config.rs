//! deploy/envoy/envoy.yaml, checked without an Envoy binary: against
//! Envoy's API (the protobuf descriptors envoy-types ships, read with
//! prost-reflect under protobuf's JSON mapping, unknown fields refused,
//! every `@type` resolved), and against config/example.yaml (a route and a
//! cluster for every model, at its upstream's address; the ext_proc
//! cluster at the gateway's default ext_proc port).

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;

use anyhow::{Context, Result, bail, ensure};
use prost_reflect::{DescriptorPool, DynamicMessage};
use routemesh_test_support::workspace;
use serde_json::Value;

/// Envoy's API descriptors, from the envoy-types package cargo resolved.
fn envoy_descriptors() -> Result<DescriptorPool> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    // Only this platform's packages: offline, cargo has downloaded just
    // those (a build fetches no Windows-only crate), and envoy-types is one.
    let rustc = std::process::Command::new("rustc")
        .arg("-vV")
        .output()
        .context("rustc -vV")?;
    let host = String::from_utf8_lossy(&rustc.stdout)
        .lines()
        .find_map(|l| l.strip_prefix("host: ").map(str::to_owned))
        .context("rustc -vV names no host")?;
    let out = std::process::Command::new(cargo)
        .args(["metadata", "--format-version", "1", "--offline"])
        .args(["--filter-platform", &host])
        .current_dir(workspace())
        .output()
        .context("cargo metadata")?;
    ensure!(
        out.status.success(),
        "cargo metadata: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let meta: Value = serde_json::from_slice(&out.stdout)?;
    let manifest = meta["packages"]
        .as_array()
        .context("packages")?
        .iter()
        .find(|p| p["name"] == "envoy-types")
        .and_then(|p| p["manifest_path"].as_str())
        .context("envoy-types is not a dependency")?;
    let bin = PathBuf::from(manifest).with_file_name("src/generated/types.bin");
    let bytes = std::fs::read(&bin).with_context(|| format!("reading {}", bin.display()))?;
    Ok(DescriptorPool::decode(bytes.as_slice())?)
}

fn envoy_yaml() -> Result<Value> {
    let path = workspace().join("deploy/envoy/envoy.yaml");
    let text = std::fs::read_to_string(&path)?;
    let yaml: serde_yaml_ng::Value = serde_yaml_ng::from_str(&text)?;
    Ok(serde_json::to_value(yaml)?)
}

/// Decodes `json` as an Envoy bootstrap, refusing unknown fields.
fn as_bootstrap(pool: &DescriptorPool, json: &Value) -> Result<DynamicMessage> {
    let desc = pool
        .get_message_by_name("envoy.config.bootstrap.v3.Bootstrap")
        .context("no Bootstrap in the descriptors")?;
    let text = serde_json::to_string(json)?;
    let mut de = serde_json::Deserializer::from_str(&text);
    let msg = DynamicMessage::deserialize(desc, &mut de)?;
    de.end()?;
    Ok(msg)
}

#[test]
fn envoy_yaml_is_a_valid_envoy_bootstrap() -> Result<()> {
    let pool = envoy_descriptors()?;
    let json = envoy_yaml()?;
    as_bootstrap(&pool, &json).context("deploy/envoy/envoy.yaml against Envoy's API")?;

    // The check can fail: a misspelt field, a wrong enum, an unknown type.
    let mut typo = json.clone();
    typo["static_resources"]["clusters"][0]["conect_timeout"] = "1s".into();
    assert!(
        as_bootstrap(&pool, &typo).is_err(),
        "unknown field accepted"
    );
    let mut mode = json.clone();
    let filter = &mut mode["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0]["typed_config"]
        ["http_filters"][0]["typed_config"];
    ensure!(
        filter["processing_mode"].is_object(),
        "ext_proc filter moved"
    );
    filter["processing_mode"]["request_body_mode"] = "BUFFERD".into();
    assert!(as_bootstrap(&pool, &mode).is_err(), "bad enum accepted");
    let mut any = json;
    any["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0]["typed_config"]["@type"] =
        "type.googleapis.com/envoy.NoSuchFilter".into();
    assert!(as_bootstrap(&pool, &any).is_err(), "unknown @type accepted");
    Ok(())
}

#[test]
fn envoy_yaml_routes_every_example_model_to_its_upstream() -> Result<()> {
    let json = envoy_yaml()?;
    let clusters: BTreeMap<String, (String, u64)> = json["static_resources"]["clusters"]
        .as_array()
        .context("clusters")?
        .iter()
        .map(|c| {
            let addr = &c["load_assignment"]["endpoints"][0]["lb_endpoints"][0]["endpoint"]
                ["address"]["socket_address"];
            let name = c["name"].as_str().unwrap_or_default().to_owned();
            let host = addr["address"].as_str().unwrap_or_default().to_owned();
            (name, (host, addr["port_value"].as_u64().unwrap_or(0)))
        })
        .collect();
    let hcm =
        &json["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0]["typed_config"];
    let filters = hcm["http_filters"].as_array().context("http_filters")?;
    ensure!(
        filters.last().map(|f| &f["name"]) == Some(&"envoy.filters.http.router".into()),
        "the router filter must be last"
    );
    let ext = filters
        .iter()
        .find(|f| f["name"] == "envoy.filters.http.ext_proc")
        .context("no ext_proc filter")?;
    let mode = &ext["typed_config"]["processing_mode"];
    assert_eq!(
        mode["request_body_mode"], "BUFFERED",
        "routing needs the body"
    );
    assert_eq!(mode["response_header_mode"], "SEND");
    let grpc = ext["typed_config"]["grpc_service"]["envoy_grpc"]["cluster_name"]
        .as_str()
        .context("ext_proc cluster")?;
    let (_, port) = clusters
        .get(grpc)
        .context("the ext_proc cluster is missing")?;
    assert_eq!(*port, 50051, "the gateway's default ext_proc port");

    // Every route's cluster exists; collect the model routes.
    let mut routed = BTreeMap::new();
    for host in hcm["route_config"]["virtual_hosts"]
        .as_array()
        .context("virtual_hosts")?
    {
        for r in host["routes"].as_array().context("routes")? {
            let Some(cluster) = r["route"]["cluster"].as_str() else {
                continue;
            };
            ensure!(clusters.contains_key(cluster), "no cluster `{cluster}`");
            for h in r["match"]["headers"].as_array().into_iter().flatten() {
                if h["name"] == "x-routemesh-model" {
                    let model = h["string_match"]["exact"].as_str().context("exact")?;
                    routed.insert(model.to_owned(), cluster.to_owned());
                }
            }
        }
    }

    // The example config's models, each to its upstream's host and port.
    let text = routemesh_test_support::gateway::example_config_text()?;
    let config =
        routemesh_common::config::parse(&text, &workspace()).map_err(|e| anyhow::anyhow!("{e}"))?;
    let mut models = BTreeSet::new();
    for m in &config.models {
        models.insert(m.name.clone());
        let cluster = routed
            .get(&m.name)
            .with_context(|| format!("no route for model `{}`", m.name))?;
        let url = &config.upstream(m.upstream).endpoints[0].url;
        let authority = url
            .strip_prefix("http://")
            .and_then(|u| u.split('/').next())
            .with_context(|| format!("unexpected upstream url {url}"))?;
        let (host, port) = &clusters[cluster];
        if authority != format!("{host}:{port}") {
            bail!(
                "model `{}`: cluster `{cluster}` is {host}:{port}, its upstream {authority}",
                m.name
            );
        }
    }
    let extra: Vec<_> = routed.keys().filter(|m| !models.contains(*m)).collect();
    ensure!(extra.is_empty(), "routes for unknown models: {extra:?}");
    Ok(())
}
