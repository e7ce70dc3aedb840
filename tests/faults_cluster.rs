//! A NATS node lost while tasks flow (issue 17 §3): a 3-node JetStream cluster started by
//! the test, every stream and bucket at replicas 3, every service a process of its own
//! connected to all three nodes. The node leading the tasks stream is SIGKILLed while
//! tasks go through, more tasks are submitted on the two nodes left (a quorum), the node
//! comes back with its store and catches up. Afterwards, as after every fault: no task
//! lost, nothing doubled, nothing dead-lettered, the audit log verified.

#[path = "common/load_miners.rs"]
mod load_miners;
#[path = "common/processes.rs"]
mod processes;

use std::time::Duration;

use gradients_bus::subjects::streams;
use gradients_testkit::{eventually, free_port, NatsServer};
use processes::ProcessMarket;

/// Node `node` (0-based) of a cluster whose route ports are `routes`: its name, its
/// routes to all three (a node ignores its own), JetStream from the command line.
fn node_config(node: usize, routes: &[u16; 3]) -> String {
    let seeds: Vec<String> = routes.iter().map(|port| format!("nats-route://127.0.0.1:{port}")).collect();
    format!(
        "server_name: faults-{node}\ncluster {{\n  name: gradients-faults\n  listen: 127.0.0.1:{}\n  routes: [{}]\n}}\n",
        routes[node],
        seeds.join(", ")
    )
}

/// Replicas of `stream` that are current (caught up), and the leader's node index.
async fn replication(bus: &gradients_bus::Bus, stream: &str) -> Result<(usize, usize), String> {
    let mut stream = bus.jetstream.get_stream(stream).await.map_err(|e| e.to_string())?;
    let info = stream.info().await.map_err(|e| e.to_string())?;
    let cluster = info.cluster.as_ref().ok_or("no cluster information")?;
    let leader = cluster.leader.as_deref().ok_or("no leader")?;
    let node = leader.trim_start_matches("faults-").parse::<usize>().map_err(|e| format!("{leader}: {e}"))?;
    let current = cluster.replicas.iter().filter(|peer| peer.current && peer.lag.unwrap_or(0) == 0).count();
    Ok((current, node))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_nats_node_killed_mid_flow_then_restarted_loses_and_doubles_nothing() {
    let routes = [free_port(), free_port(), free_port()];
    let mut nodes: Vec<NatsServer> =
        (0..3).map(|node| NatsServer::start_with_config(&node_config(node, &routes)).expect("a node")).collect();
    let mut market = ProcessMarket::new(nodes.iter().map(NatsServer::url).collect(), 3).await;
    // Declaring waits for the cluster's meta leader (elected once the routes are up).
    market.publish_base_model().await;
    market.start_all();
    market.wait_ready().await;
    market.start_miners().await;

    let mut tasks = vec![market.submit("cluster-0").await, market.submit("cluster-1").await];
    let bus = market.bus().await;
    let (_, leader) =
        eventually(Duration::from_secs(30), "a leader of the tasks stream", || replication(&bus, streams::TASKS)).await;
    nodes[leader].kill();
    // The two nodes left are a quorum: tasks are accepted and go through meanwhile.
    tasks.push(market.submit("cluster-2").await);
    tasks.push(market.submit("cluster-3").await);
    tokio::time::sleep(Duration::from_secs(2)).await;
    nodes[leader].restart().expect("the node restarts with its store");
    tasks.push(market.submit("cluster-4").await);
    market.assert_whole(&tasks).await;
    eventually(Duration::from_secs(60), "the restarted node caught up", || async {
        let (current, _) = replication(&bus, streams::TASKS).await?;
        (current == 2).then_some(()).ok_or(format!("{current} of 2 followers current"))
    })
    .await;
}
