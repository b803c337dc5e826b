//! Brings a Kafka client back after librdkafka has forgotten every broker.
//!
//! librdkafka 2.12 drops ("decommissions") each learned broker that a
//! metadata answer does not list, and it drops the bootstrap entries once it
//! has learned real brokers. A KRaft broker in controlled shutdown can answer
//! with an empty broker list, so on a one-broker cluster a client that asks
//! at that moment is left knowing no broker at all. It then cannot ask for
//! metadata again, and its own re-bootstrap timer
//! (`metadata.recovery.rebootstrap.trigger.ms`) never starts, because that
//! timer is armed by a metadata request. Deliveries then wait until
//! `message.timeout.ms` and a consumer reads nothing, although the broker is
//! back. The broker-restart fault test hit this in CI; 16 producers across
//! one restart reproduce it in about one run of three.
//!
//! The way back is librdkafka's own: add the bootstrap servers again
//! (`rd_kafka_brokers_add`). It is done only when something is already
//! stuck: a delivery pending for [`STALL`], a consumer idle for
//! [`IDLE_PROBE`] whose metadata request fails, or a failed lag query. An
//! entry added while the client still knows its brokers is harmless: the
//! next metadata answer drops it, as it dropped the first bootstrap entry.

use std::ffi::CString;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use rdkafka::client::{Client, ClientContext};
use rdkafka::consumer::{Consumer, StreamConsumer};
use tracing::debug;

/// A delivery pending this long re-adds the bootstrap servers, and again
/// each time this passes.
pub(super) const STALL: Duration = Duration::from_secs(2);

/// A consumer that read nothing for this long checks that it still reaches
/// a broker.
pub(super) const IDLE_PROBE: Duration = Duration::from_secs(10);

/// How long that check waits for a metadata answer.
pub(super) const PROBE_TIMEOUT: Duration = Duration::from_secs(2);

/// Adds `bootstrap` (the configured `host:port` list) to the client's
/// brokers again; addresses the client still knows are left alone.
pub(super) fn rebootstrap<C: ClientContext>(client: &Client<C>, bootstrap: &str) {
    let Ok(list) = CString::new(bootstrap) else {
        return;
    };
    // SAFETY: `native_ptr` is valid while `client` is borrowed;
    // rd_kafka_brokers_add may be called from any thread at any time and
    // copies the list it is given.
    let added =
        unsafe { rdkafka::bindings::rd_kafka_brokers_add(client.native_ptr(), list.as_ptr()) };
    debug!(added, "kafka: re-added the bootstrap servers");
}

/// Asks, on a blocking thread, for `topic`'s metadata; if no broker
/// answers, re-adds the bootstrap servers. Returns at once.
pub(super) fn probe(consumer: Arc<StreamConsumer>, topic: &str, bootstrap: &str) {
    let (topic, bootstrap) = (topic.to_owned(), bootstrap.to_owned());
    tokio::task::spawn_blocking(move || {
        if let Err(e) = consumer.fetch_metadata(Some(&topic), PROBE_TIMEOUT) {
            debug!(error = %e, "kafka: an idle reader reached no broker");
            rebootstrap(consumer.client(), &bootstrap);
        }
    });
}

/// Awaits `delivery`, re-adding the bootstrap servers each [`STALL`] it is
/// still pending.
pub(super) async fn watched<F: Future, C: ClientContext>(
    delivery: F,
    client: &Client<C>,
    bootstrap: &str,
) -> F::Output {
    let mut delivery = std::pin::pin!(delivery);
    loop {
        match tokio::time::timeout(STALL, &mut delivery).await {
            Ok(out) => return out,
            Err(_pending) => rebootstrap(client, bootstrap),
        }
    }
}
