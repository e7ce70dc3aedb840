//! Assignments are leased, not acknowledged on receipt: a miner that dies while training
//! gets its assignment back, one that keeps renewing keeps it, and one that can never be
//! worked on is terminated instead of redelivered forever. Real nats-server, real consumer.

use std::path::PathBuf;
use std::time::Duration;

use gradients_bus::event::{publish_event, OutgoingEvent};
use gradients_bus::{subjects, topology, Bus};
use gradients_config::NatsSettings;
use gradients_miner::identity::domains;
use gradients_miner::{Identity, MinerClient};
use gradients_proto::v1::Assignment;
use gradients_testkit::NatsServer;
use prost::Message;

const ACK_WAIT: Duration = Duration::from_secs(1);

struct Market {
    _nats: NatsServer,
    _keys: tempfile::TempDir,
    bus: Bus,
    dispatch: Identity,
    miner_key: PathBuf,
}

impl Market {
    async fn start() -> Market {
        let nats = NatsServer::start().expect("nats-server");
        let settings = NatsSettings { url: vec![nats.url()], ..NatsSettings::default() };
        let bus = Bus::connect(&settings, "lease-test").await.expect("connect");
        topology::declare(&bus, &settings).await.expect("topology");
        let keys = tempfile::tempdir().expect("tempdir");
        let miner_key = keys.path().join("miner.key");
        Identity::generate().save(&miner_key).expect("miner key");
        Market { _nats: nats, _keys: keys, bus, dispatch: Identity::generate(), miner_key }
    }

    /// The miner's client, as a fresh process of the same miner would make it.
    fn client(&self) -> MinerClient {
        let identity = Identity::load(&self.miner_key).expect("miner key");
        MinerClient::new(self.bus.clone(), identity, Duration::from_secs(5)).with_assignment_ack_wait(ACK_WAIT)
    }

    fn miner_id(&self) -> String {
        Identity::load(&self.miner_key).expect("miner key").id()
    }

    /// Publishes a dispatch-signed assignment of `task_id` to the miner.
    async fn assign(&self, task_id: &str) {
        let mut assignment = Assignment {
            assignment_id: format!("{task_id}/{}", self.miner_id()),
            task_id: task_id.to_owned(),
            miner_id: self.miner_id(),
            cohort_size: 1,
            ..Default::default()
        };
        assignment.signature = self.dispatch.sign_message(domains::ASSIGNMENT, &assignment, |a| a.signature.clear());
        self.publish(assignment.assignment_id.clone(), assignment.encode_to_vec()).await;
    }

    async fn publish(&self, id: String, payload: Vec<u8>) {
        let subject = subjects::assignments(&self.miner_id());
        let event = OutgoingEvent { subject, id, payload: payload.into(), traceparent: None };
        publish_event(&self.bus.jetstream, event).await.expect("publish");
    }

    fn dispatch_key(&self) -> Vec<u8> {
        self.dispatch.public_key().to_vec()
    }
}

/// A lease dropped unsettled (the miner died while training) comes back after the ack
/// wait, to a new process of the same miner; once finished it never comes back.
#[tokio::test]
async fn an_assignment_survives_a_crash_and_ends_when_finished() {
    let market = Market::start().await;
    market.assign("t1").await;
    let first = market.client().next_assignment(&market.dispatch_key(), Duration::from_secs(5)).await.unwrap();
    let first = first.expect("assigned");
    assert_eq!((first.task_id.as_str(), first.deliveries()), ("t1", 1));
    drop(first); // the process dies before submitting

    let again = market.client().next_assignment(&market.dispatch_key(), Duration::from_secs(5)).await.unwrap();
    let again = again.expect("the same assignment, delivered again");
    assert_eq!((again.task_id.as_str(), again.deliveries()), ("t1", 2));
    again.finish().await.unwrap();
    let after = market.client().next_assignment(&market.dispatch_key(), ACK_WAIT * 3).await.unwrap();
    assert!(after.is_none(), "a finished assignment was delivered again");
}

/// While the lease is renewed, nobody else gets the assignment, however long the job runs.
#[tokio::test]
async fn a_renewed_lease_is_kept() {
    let market = Market::start().await;
    market.assign("t2").await;
    let lease = market.client().next_assignment(&market.dispatch_key(), Duration::from_secs(5)).await.unwrap();
    let lease = lease.expect("assigned");
    let other = market.client();
    let stolen = lease
        .renewed_while(ACK_WAIT / 4, async {
            // Three ack waits long, asking for work all along as a second process would.
            other.next_assignment(&market.dispatch_key(), ACK_WAIT * 3).await.unwrap()
        })
        .await;
    assert!(stolen.is_none(), "a renewed assignment was handed out again");
    lease.finish().await.unwrap();
}

/// An assignment given up, and a message that is not an assignment at all, are terminated:
/// neither is delivered again after the ack wait.
#[tokio::test]
async fn given_up_and_undecodable_assignments_are_not_redelivered() {
    let market = Market::start().await;
    market.assign("t3").await;
    let lease = market.client().next_assignment(&market.dispatch_key(), Duration::from_secs(5)).await.unwrap();
    lease.expect("assigned").give_up().await.unwrap();

    market.publish("garbage".into(), b"\xff\xff not an assignment".to_vec()).await;
    let garbage = market.client().next_assignment(&market.dispatch_key(), Duration::from_secs(5)).await;
    assert!(garbage.is_err(), "an undecodable assignment must be reported");

    let after = market.client().next_assignment(&market.dispatch_key(), ACK_WAIT * 3).await.unwrap();
    assert!(after.is_none(), "a terminated message was delivered again");
}

/// An assignment handed back (the trainer shut down mid-training) comes back to the
/// miner's next start at once, not only after the ack wait, and counts as a redelivery.
#[tokio::test]
async fn a_handed_back_assignment_is_delivered_again_at_once() {
    let market = Market::start().await;
    // An ack wait far longer than the test waits: only the hand-back can bring it back.
    let long_lease = Duration::from_secs(120);
    let client = || market.client().with_assignment_ack_wait(long_lease);
    market.assign("t4").await;
    let lease = client().next_assignment(&market.dispatch_key(), Duration::from_secs(5)).await.unwrap();
    let lease = lease.expect("assigned");
    lease.hand_back().await.unwrap();

    let again = client().next_assignment(&market.dispatch_key(), Duration::from_secs(10)).await.unwrap();
    let again = again.expect("handed back, delivered again before the ack wait");
    assert_eq!((again.task_id.as_str(), again.deliveries()), ("t4", 2));
    again.finish().await.unwrap();
}
