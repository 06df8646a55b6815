//! `Table` answers (`Accept: application/json;as=Table;v=v1;g=meta.k8s.io`): the columns the
//! API server's printers give each kind (kubectl shows those of priority 0, and with `-o wide`
//! those of priority 1 too), computed from the stored JSON. One concept at some length: most
//! of the file is the eleven kinds' column lists and row functions, as the API server's
//! printers hold them.

use jiff::Timestamp;
use serde_json::{Value, json};

mod pod;

use pod::pod_cells;

/// A column: name, type, priority, description.
type Column = (&'static str, &'static str, u8, &'static str);

const NAME: Column = (
    "Name",
    "string",
    0,
    "Name must be unique within a namespace.",
);
const AGE: Column = (
    "Age",
    "string",
    0,
    "CreationTimestamp is a timestamp representing the server time when this object was created.",
);

/// The columns of a kind.
pub fn columns(kind: &str) -> Vec<Column> {
    match kind {
        "Pod" => vec![
            NAME,
            (
                "Ready",
                "string",
                0,
                "The aggregate readiness state of this pod for accepting traffic.",
            ),
            (
                "Status",
                "string",
                0,
                "The aggregate status of the containers in this pod.",
            ),
            (
                "Restarts",
                "string",
                0,
                "The number of times the containers in this pod have been restarted and when the last container in this pod has restarted.",
            ),
            AGE,
            (
                "IP",
                "string",
                1,
                "IP address allocated to the pod. Routable at least within the cluster.",
            ),
            (
                "Node",
                "string",
                1,
                "Name of the Node this pod is scheduled on.",
            ),
            (
                "Nominated Node",
                "string",
                1,
                "Name of the Node nominated by the scheduler.",
            ),
            (
                "Readiness Gates",
                "string",
                1,
                "The readiness gates of this pod and how many are ready.",
            ),
        ],
        "Service" => vec![
            NAME,
            ("Type", "string", 0, "The type of the service."),
            ("Cluster-IP", "string", 0, "The cluster IP of the service."),
            (
                "External-IP",
                "string",
                0,
                "The external IPs of the service.",
            ),
            ("Port(s)", "string", 0, "The ports of the service."),
            AGE,
            ("Selector", "string", 1, "The selector of the service."),
        ],
        "Deployment" => vec![
            NAME,
            ("Ready", "string", 0, "Number of the pod with ready state"),
            (
                "Up-to-date",
                "string",
                0,
                "Total number of non-terminated pods targeted by this deployment that have the desired template spec.",
            ),
            (
                "Available",
                "string",
                0,
                "Total number of available pods (ready for at least minReadySeconds) targeted by this deployment.",
            ),
            AGE,
            (
                "Containers",
                "string",
                1,
                "Names of each container in the template.",
            ),
            (
                "Images",
                "string",
                1,
                "Images referenced by each container in the template.",
            ),
            ("Selector", "string", 1, "Label selector for pods."),
        ],
        "ReplicaSet" => vec![
            NAME,
            (
                "Desired",
                "integer",
                0,
                "Replicas is the number of desired replicas.",
            ),
            (
                "Current",
                "integer",
                0,
                "Replicas is the most recently observed number of replicas.",
            ),
            (
                "Ready",
                "integer",
                0,
                "The number of ready replicas for this replica set.",
            ),
            AGE,
            (
                "Containers",
                "string",
                1,
                "Names of each container in the template.",
            ),
            (
                "Images",
                "string",
                1,
                "Images referenced by each container in the template.",
            ),
            (
                "Selector",
                "string",
                1,
                "Selector is a label query over pods that should match the replica count.",
            ),
        ],
        "Ingress" => vec![
            NAME,
            (
                "Class",
                "string",
                0,
                "The name of the IngressClass resource that should be used for ingress.",
            ),
            (
                "Hosts",
                "string",
                0,
                "Hosts that incoming requests are matched against before the ingress rule",
            ),
            (
                "Address",
                "string",
                0,
                "Address is a list containing ingress points for the load-balancer",
            ),
            (
                "Ports",
                "string",
                0,
                "Ports of TLS configurations that open",
            ),
            AGE,
        ],
        "IngressClass" => vec![
            NAME,
            (
                "Controller",
                "string",
                0,
                "Controller that is responsible for handling this class",
            ),
            (
                "Parameters",
                "string",
                0,
                "A reference to a resource with additional parameters",
            ),
            AGE,
        ],
        "EndpointSlice" => vec![
            NAME,
            ("AddressType", "string", 0, "The IP protocol for this slice"),
            ("Ports", "string", 0, "List of ports exposed by this slice"),
            ("Endpoints", "string", 0, "List of endpoints in this slice"),
            AGE,
        ],
        "Endpoints" => vec![
            NAME,
            ("Endpoints", "string", 0, "Endpoints of the service"),
            AGE,
        ],
        "Namespace" => vec![
            NAME,
            ("Status", "string", 0, "The status of the namespace"),
            AGE,
        ],
        "AuthorizationPolicy" => vec![NAME, ("Action", "string", 0, "The operation to take."), AGE],
        "ServiceAccount" => vec![
            NAME,
            (
                "Secrets",
                "string",
                0,
                "The number of Secrets the ServiceAccount lists",
            ),
            AGE,
        ],
        "Secret" => vec![
            NAME,
            ("Type", "string", 0, "The type of the secret"),
            ("Data", "string", 0, "The number of entries in the secret"),
            AGE,
        ],
        "Event" => vec![
            (
                "Last Seen",
                "string",
                0,
                "Time when last this event was observed.",
            ),
            (
                "Type",
                "string",
                0,
                "Type of this event (Normal, Warning), new types could be added in the future.",
            ),
            (
                "Reason",
                "string",
                0,
                "This should be a short, machine understandable string that gives the reason for this event being generated.",
            ),
            (
                "Object",
                "string",
                0,
                "The object that this event is about.",
            ),
            (
                "Subobject",
                "string",
                1,
                "A subobject of the object this event is about.",
            ),
            ("Source", "string", 1, "The component reporting this event."),
            (
                "Message",
                "string",
                0,
                "A human-readable description of the status of this operation.",
            ),
            (
                "First Seen",
                "string",
                1,
                "The time at which the event was first recorded.",
            ),
            (
                "Count",
                "string",
                1,
                "The number of times this event has occurred.",
            ),
            (
                "Name",
                "string",
                1,
                "Name must be unique within a namespace.",
            ),
        ],
        _ => vec![NAME, AGE],
    }
}

/// What each row carries of its object (`includeObject`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Include {
    None,
    Metadata,
    Object,
}

impl Include {
    /// The `includeObject` parameter; `Metadata` when absent.
    pub fn parse(value: Option<&str>) -> Result<Include, String> {
        match value {
            None | Some("Metadata") => Ok(Include::Metadata),
            Some("None") => Ok(Include::None),
            Some("Object") => Ok(Include::Object),
            Some(other) => Err(format!(
                "includeObject: unsupported value {other:?}: supported values are \"None\", \"Metadata\", \"Object\""
            )),
        }
    }
}

/// A `Table` of objects of one kind.
pub fn table(
    kind: &str,
    objects: &[Value],
    metadata: Value,
    include: Include,
    now: Timestamp,
) -> Value {
    let definitions: Vec<Value> = columns(kind)
        .into_iter()
        .map(|(name, ty, priority, description)| {
            let format = if name == "Name" && kind != "Event" { "name" } else { "" };
            json!({"name": name, "type": ty, "format": format, "description": description, "priority": priority})
        })
        .collect();
    let rows: Vec<Value> = objects
        .iter()
        .map(|o| {
            let mut row = json!({"cells": cells(kind, o, now)});
            match include {
                Include::None => {}
                Include::Object => row["object"] = o.clone(),
                Include::Metadata => {
                    row["object"] = json!({
                        "kind": "PartialObjectMetadata",
                        "apiVersion": "meta.k8s.io/v1",
                        "metadata": o.get("metadata").cloned().unwrap_or(json!({})),
                    });
                }
            }
            row
        })
        .collect();
    json!({
        "kind": "Table",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": metadata,
        "columnDefinitions": definitions,
        "rows": rows,
    })
}

fn s<'a>(o: &'a Value, pointer: &str) -> Option<&'a str> {
    o.pointer(pointer).and_then(Value::as_str)
}

fn i(o: &Value, pointer: &str) -> i64 {
    o.pointer(pointer).and_then(Value::as_i64).unwrap_or(0)
}

fn arr<'a>(o: &'a Value, pointer: &str) -> &'a [Value] {
    o.pointer(pointer)
        .and_then(Value::as_array)
        .map_or(&[], Vec::as_slice)
}

fn or_none(s: String) -> String {
    if s.is_empty() { "<none>".into() } else { s }
}

/// The age of a timestamp as `kubectl` shows it.
fn age(o: &Value, pointer: &str, now: Timestamp) -> String {
    match s(o, pointer).and_then(|t| t.parse::<Timestamp>().ok()) {
        Some(t) => human_duration(now.as_second() - t.as_second()),
        None => "<unknown>".into(),
    }
}

/// Kubernetes' `duration.HumanDuration`: two units of precision while they matter.
pub fn human_duration(seconds: i64) -> String {
    if seconds < -1 {
        return "<invalid>".into();
    }
    let seconds = seconds.max(0);
    if seconds < 60 * 2 {
        return format!("{seconds}s");
    }
    let minutes = seconds / 60;
    if minutes < 10 {
        let s = seconds % 60;
        return if s == 0 {
            format!("{minutes}m")
        } else {
            format!("{minutes}m{s}s")
        };
    }
    if minutes < 60 * 3 {
        return format!("{minutes}m");
    }
    let hours = minutes / 60;
    if hours < 8 {
        let m = minutes % 60;
        return if m == 0 {
            format!("{hours}h")
        } else {
            format!("{hours}h{m}m")
        };
    }
    if hours < 48 {
        return format!("{hours}h");
    }
    let days = hours / 24;
    if hours < 24 * 8 {
        let h = hours % 24;
        return if h == 0 {
            format!("{days}d")
        } else {
            format!("{days}d{h}h")
        };
    }
    if hours < 24 * 365 * 2 {
        return format!("{days}d");
    }
    let years = days / 365;
    if hours < 24 * 365 * 8 {
        let d = days % 365;
        return if d == 0 {
            format!("{years}y")
        } else {
            format!("{years}y{d}d")
        };
    }
    format!("{years}y")
}

fn selector_string(map: Option<&Value>) -> String {
    let pairs: Vec<String> = map
        .and_then(Value::as_object)
        .into_iter()
        .flatten()
        .map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or_default()))
        .collect();
    pairs.join(",")
}

/// A Deployment's or ReplicaSet's label selector as the printers show it.
fn label_selector(o: &Value) -> String {
    let mut parts = vec![];
    let labels = selector_string(o.pointer("/spec/selector/matchLabels"));
    if !labels.is_empty() {
        parts.push(labels);
    }
    for e in arr(o, "/spec/selector/matchExpressions") {
        let key = s(e, "/key").unwrap_or_default();
        let values: Vec<&str> = arr(e, "/values").iter().filter_map(Value::as_str).collect();
        parts.push(match s(e, "/operator").unwrap_or_default() {
            "In" => format!("{key} in ({})", values.join(",")),
            "NotIn" => format!("{key} notin ({})", values.join(",")),
            "Exists" => key.to_owned(),
            _ => format!("!{key}"),
        });
    }
    or_none(parts.join(","))
}

fn containers_and_images(o: &Value) -> (String, String) {
    let containers = arr(o, "/spec/template/spec/containers");
    let names: Vec<&str> = containers.iter().filter_map(|c| s(c, "/name")).collect();
    let images: Vec<&str> = containers.iter().filter_map(|c| s(c, "/image")).collect();
    (names.join(","), images.join(","))
}

/// The first three of a list and how many more.
fn first_three(items: &[String]) -> String {
    if items.len() > 3 {
        format!("{} + {} more...", items[..3].join(","), items.len() - 3)
    } else {
        items.join(",")
    }
}

fn cells(kind: &str, o: &Value, now: Timestamp) -> Vec<Value> {
    let name = json!(s(o, "/metadata/name").unwrap_or_default());
    let created = json!(age(o, "/metadata/creationTimestamp", now));
    match kind {
        "Pod" => pod_cells(o, now, name, created),
        "Service" => {
            let ty = s(o, "/spec/type").unwrap_or("ClusterIP");
            let cluster_ip = s(o, "/spec/clusterIP").unwrap_or("<none>");
            let mut external: Vec<String> = arr(o, "/spec/externalIPs")
                .iter()
                .filter_map(|v| v.as_str().map(str::to_owned))
                .collect();
            if ty == "LoadBalancer" {
                external.extend(
                    arr(o, "/status/loadBalancer/ingress")
                        .iter()
                        .filter_map(|i| {
                            s(i, "/ip").or_else(|| s(i, "/hostname")).map(str::to_owned)
                        }),
                );
                if external.is_empty() {
                    external.push("<pending>".into());
                }
            }
            if ty == "ExternalName" {
                external.push(s(o, "/spec/externalName").unwrap_or_default().to_owned());
            }
            let ports: Vec<String> = arr(o, "/spec/ports")
                .iter()
                .map(|p| {
                    let protocol = s(p, "/protocol").unwrap_or("TCP");
                    match p.get("nodePort").and_then(Value::as_i64) {
                        Some(np) => format!("{}:{np}/{protocol}", i(p, "/port")),
                        None => format!("{}/{protocol}", i(p, "/port")),
                    }
                })
                .collect();
            vec![
                name,
                json!(ty),
                json!(cluster_ip),
                json!(or_none(external.join(","))),
                json!(or_none(ports.join(","))),
                created,
                json!(or_none(selector_string(o.pointer("/spec/selector")))),
            ]
        }
        "Deployment" => {
            let (containers, images) = containers_and_images(o);
            vec![
                name,
                json!(format!(
                    "{}/{}",
                    i(o, "/status/readyReplicas"),
                    i(o, "/spec/replicas")
                )),
                json!(i(o, "/status/updatedReplicas")),
                json!(i(o, "/status/availableReplicas")),
                created,
                json!(containers),
                json!(images),
                json!(label_selector(o)),
            ]
        }
        "ReplicaSet" => {
            let (containers, images) = containers_and_images(o);
            vec![
                name,
                json!(i(o, "/spec/replicas")),
                json!(i(o, "/status/replicas")),
                json!(i(o, "/status/readyReplicas")),
                created,
                json!(containers),
                json!(images),
                json!(label_selector(o)),
            ]
        }
        "Ingress" => {
            let class = s(o, "/spec/ingressClassName").unwrap_or("<none>");
            let hosts: Vec<&str> = arr(o, "/spec/rules")
                .iter()
                .map(|r| s(r, "/host").unwrap_or("*"))
                .collect();
            let hosts = if hosts.is_empty() {
                "*".to_owned()
            } else {
                hosts.join(",")
            };
            let address: Vec<&str> = arr(o, "/status/loadBalancer/ingress")
                .iter()
                .filter_map(|i| s(i, "/ip").or_else(|| s(i, "/hostname")))
                .collect();
            let ports = if arr(o, "/spec/tls").is_empty() {
                "80"
            } else {
                "80, 443"
            };
            vec![
                name,
                json!(class),
                json!(hosts),
                json!(address.join(",")),
                json!(ports),
                created,
            ]
        }
        "IngressClass" => {
            let params = match o.pointer("/spec/parameters") {
                Some(p) if !p.is_null() => {
                    let group = s(p, "/apiGroup").unwrap_or_default();
                    let kind = s(p, "/kind").unwrap_or_default();
                    let kind = if group.is_empty() {
                        kind.to_owned()
                    } else {
                        format!("{kind}.{group}")
                    };
                    format!("{kind}/{}", s(p, "/name").unwrap_or_default())
                }
                _ => "<none>".into(),
            };
            vec![
                name,
                json!(s(o, "/spec/controller").unwrap_or_default()),
                json!(params),
                created,
            ]
        }
        "EndpointSlice" => {
            let ports: Vec<String> = arr(o, "/ports")
                .iter()
                .map(|p| {
                    p.get("port")
                        .and_then(Value::as_i64)
                        .map_or("<unset>".into(), |p| p.to_string())
                })
                .collect();
            let addresses: Vec<String> = arr(o, "/endpoints")
                .iter()
                .flat_map(|e| {
                    arr(e, "/addresses")
                        .iter()
                        .filter_map(|a| a.as_str().map(str::to_owned))
                })
                .collect();
            let ports = if ports.is_empty() {
                "<unset>".to_owned()
            } else {
                ports.join(",")
            };
            let endpoints = if addresses.is_empty() {
                "<unset>".to_owned()
            } else {
                first_three(&addresses)
            };
            vec![
                name,
                json!(s(o, "/addressType").unwrap_or_default()),
                json!(ports),
                json!(endpoints),
                created,
            ]
        }
        "Endpoints" => {
            let mut list = Vec::new();
            for subset in arr(o, "/subsets") {
                for a in arr(subset, "/addresses") {
                    let ip = s(a, "/ip").unwrap_or_default();
                    let ports = arr(subset, "/ports");
                    if ports.is_empty() {
                        list.push(ip.to_owned());
                    }
                    for p in ports {
                        list.push(format!("{ip}:{}", i(p, "/port")));
                    }
                }
            }
            vec![name, json!(or_none(first_three(&list))), created]
        }
        "Namespace" => vec![
            name,
            json!(s(o, "/status/phase").unwrap_or("Active")),
            created,
        ],
        // Istio's printer column is `.spec.action`, empty when not given (ALLOW then).
        "AuthorizationPolicy" => vec![
            name,
            json!(s(o, "/spec/action").unwrap_or_default()),
            created,
        ],
        "ServiceAccount" => vec![name, json!(arr(o, "/secrets").len()), created],
        "Secret" => {
            let data = o
                .get("data")
                .and_then(Value::as_object)
                .map_or(0, serde_json::Map::len);
            vec![
                name,
                json!(s(o, "/type").unwrap_or("Opaque")),
                json!(data),
                created,
            ]
        }
        "Event" => {
            let object = format!(
                "{}/{}",
                s(o, "/involvedObject/kind")
                    .unwrap_or_default()
                    .to_lowercase(),
                s(o, "/involvedObject/name").unwrap_or_default()
            );
            vec![
                json!(age(o, "/lastTimestamp", now)),
                json!(s(o, "/type").unwrap_or_default()),
                json!(s(o, "/reason").unwrap_or_default()),
                json!(object),
                json!(s(o, "/involvedObject/fieldPath").unwrap_or_default()),
                json!(s(o, "/source/component").unwrap_or_default()),
                json!(s(o, "/message").unwrap_or_default()),
                json!(age(o, "/firstTimestamp", now)),
                json!(i(o, "/count")),
                name,
            ]
        }
        _ => vec![name, created],
    }
}
