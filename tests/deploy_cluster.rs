//! `deploy/nats/cluster/` as it ships, on three real nats-server processes: the nodes form
//! one JetStream cluster with the users of `deploy/nats/gradients.conf`; a service declaring
//! its topology with `nats.replicas = 3` gets every stream and object store replicated on the
//! three nodes; the stream leader's node is killed and publishing goes on (two of three are a
//! quorum); the node comes back and catches up. Only the addresses are rewritten for one host.

use std::time::Duration;

use futures::TryStreamExt;
use gradients_bus::subjects::streams;
use gradients_bus::{topology, Bus};
use gradients_config::{NatsAuth, NatsSettings};
use gradients_testkit::{eventually, free_port, workspace_root, NatsServer};

const PASSWORDS: [&str; 8] = [
    "$GRADIENTS_INTAKE_PASSWORD",
    "$GRADIENTS_DISPATCH_PASSWORD",
    "$GRADIENTS_LEDGER_PASSWORD",
    "$GRADIENTS_EVALUATOR_PASSWORD",
    "$GRADIENTS_CUSTOMER_PASSWORD",
    "$GRADIENTS_AUDIT_PASSWORD",
    "$GRADIENTS_AUDITOR_PASSWORD",
    "$GRADIENTS_MINER_PASSWORD",
];

/// Node `node`'s shipped file with the include inlined (the test server runs from a
/// temporary folder), the passwords filled in, and the cluster and monitoring addresses
/// moved to free local ports (`route_ports[i]` is node i+1's).
fn node_config(node: usize, route_ports: &[u16; 3]) -> String {
    let deploy = workspace_root().join("deploy/nats");
    let shared = std::fs::read_to_string(deploy.join("gradients.conf")).expect("gradients.conf");
    let mut text = std::fs::read_to_string(deploy.join(format!("cluster/nats-{node}.conf"))).expect("the node file");
    assert!(text.contains("include \"../gradients.conf\""), "node {node} includes the shared users");
    // The test server's store comes from its command line (`-sd`), which nats-server
    // refuses beside a store_dir in the file: both files' stores go.
    let shared = shared.replace("jetstream {\n  store_dir: \"/var/lib/gradients/nats\"\n}", "");
    text = text.replace("include \"../gradients.conf\"", &shared);
    text = text.replace(&format!("jetstream {{\n  store_dir: \"/var/lib/gradients/nats-{node}\"\n}}"), "");
    for variable in PASSWORDS {
        text = text.replace(variable, "\"secret\"");
    }
    text = text.replace("0.0.0.0:6222", &format!("127.0.0.1:{}", route_ports[node - 1]));
    for (i, port) in route_ports.iter().enumerate() {
        text = text.replace(&format!("nats-route://nats-{}:6222", i + 1), &format!("nats-route://127.0.0.1:{port}"));
    }
    text.replace("http_port: 8222", &format!("http_port: {}", free_port()))
}

fn as_intake(nodes: &[NatsServer]) -> NatsSettings {
    NatsSettings {
        url: nodes.iter().map(NatsServer::url).collect(),
        auth: NatsAuth { user: Some("intake".to_owned()), password: Some("secret".to_owned()), ..Default::default() },
        replicas: 3,
        ..NatsSettings::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_nodes_replicate_every_stream_and_survive_the_loss_of_one() {
    let route_ports = [free_port(), free_port(), free_port()];
    let mut nodes: Vec<NatsServer> =
        (1..=3).map(|node| NatsServer::start_with_config(&node_config(node, &route_ports)).expect("node")).collect();
    let settings = as_intake(&nodes);
    let bus = Bus::connect(&settings, "deploy-cluster-test").await.expect("connect as intake");

    // The meta leader is elected once the routes are up; until then declaring is refused.
    eventually(Duration::from_secs(60), "the cluster to accept the topology", || topology::declare(&bus, &settings))
        .await;

    let mut names: Vec<String> = bus.jetstream.stream_names().try_collect().await.expect("stream names");
    names.sort();
    assert!(names.iter().any(|n| n == streams::TASKS) && names.iter().any(|n| n.starts_with("OBJ_")), "{names:?}");
    for name in &names {
        let info = bus.jetstream.get_stream(name).await.expect("stream").info().await.expect("info").clone();
        assert_eq!(info.config.num_replicas, 3, "{name} is replicated on every node");
    }

    // Kill the node that leads the tasks stream: the hardest one to lose.
    let leader = eventually(Duration::from_secs(30), "a leader of the tasks stream", || async {
        let mut stream = bus.jetstream.get_stream(streams::TASKS).await.ok()?;
        let info = stream.info().await.ok()?;
        info.cluster.as_ref()?.leader.clone()
    })
    .await;
    let killed = leader.trim_start_matches("nats-").parse::<usize>().expect("a node name") - 1;
    nodes[killed].kill();

    let published = eventually(Duration::from_secs(60), "a publish acknowledged by the two nodes left", || async {
        let ack = bus.jetstream.publish("gradients.tasks.created", "after a node died".into()).await.ok()?;
        ack.await.ok()
    })
    .await;
    assert_eq!(published.stream, streams::TASKS);

    nodes[killed].restart().expect("the node restarts with its store");
    eventually(Duration::from_secs(60), "the restarted node to catch up", || async {
        let mut stream = bus.jetstream.get_stream(streams::TASKS).await.ok()?;
        let info = stream.info().await.ok()?;
        let cluster = info.cluster.as_ref()?;
        let caught_up = cluster.replicas.iter().filter(|peer| peer.current && peer.lag.unwrap_or(0) == 0).count();
        (info.state.messages == 1 && caught_up == 2).then_some(())
    })
    .await;
}
