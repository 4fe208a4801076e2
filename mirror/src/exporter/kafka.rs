//! Reports produced to a Kafka topic with librdkafka (the rdkafka crate, bundled librdkafka).
//! `send` only enqueues: when the bounded queue is full the report is counted as dropped
//! instead of blocking the routing thread. Delivery results come back on the producer's own
//! thread and are counted; the queue is flushed when the exporter is replaced or shut down.

use super::Exporter;
use crate::stats::Stats;
use rdkafka::config::ClientConfig;
use rdkafka::error::KafkaError;
use rdkafka::producer::{BaseRecord, DeliveryResult, Producer, ProducerContext, ThreadedProducer};
use rdkafka::ClientContext;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::Duration;

/// Reports kept in memory while the broker is slow or away.
const QUEUE_MESSAGES: &str = "100000";
/// How long a report may wait for delivery before it counts as dropped.
const MESSAGE_TIMEOUT_MS: &str = "30000";
const FLUSH_TIMEOUT: Duration = Duration::from_secs(10);

struct Counting {
    stats: Arc<Stats>,
}

impl ClientContext for Counting {
    fn error(&self, error: KafkaError, reason: &str) {
        bridge::log_warning!("kafka exporter: {error}: {reason}");
    }
}

impl ProducerContext for Counting {
    type DeliveryOpaque = ();
    fn delivery(&self, result: &DeliveryResult<'_>, _: ()) {
        match result {
            Ok(_) => {
                self.stats.exported.fetch_add(1, Relaxed);
            }
            Err((e, _)) => {
                if self.stats.drop_one() {
                    bridge::log_error!("kafka exporter: a report was not delivered: {e}");
                }
            }
        }
    }
}

pub struct KafkaExporter {
    producer: ThreadedProducer<Counting>,
    topic: String,
}

impl KafkaExporter {
    pub fn new(broker: &str, topic: &str, stats: Arc<Stats>) -> Result<Self, String> {
        let producer = ClientConfig::new()
            .set("bootstrap.servers", broker)
            .set("client.id", "maxscale-mirror")
            .set("queue.buffering.max.messages", QUEUE_MESSAGES)
            .set("message.timeout.ms", MESSAGE_TIMEOUT_MS)
            .create_with_context(Counting { stats })
            .map_err(|e| format!("Failed to create Kafka producer: {e}"))?;
        Ok(KafkaExporter {
            producer,
            topic: topic.to_string(),
        })
    }
}

impl Exporter for KafkaExporter {
    fn ship(&self, line: &str) {
        let doc = line.strip_suffix('\n').unwrap_or(line);
        let record = BaseRecord::<(), str>::to(&self.topic).payload(doc);
        if let Err((e, _)) = self.producer.send(record) {
            if self.producer.context().stats.drop_one() {
                bridge::log_error!("kafka exporter: a report was dropped: {e}");
            }
        }
    }
}

impl Drop for KafkaExporter {
    fn drop(&mut self) {
        if let Err(e) = self.producer.flush(FLUSH_TIMEOUT) {
            let left = self.producer.in_flight_count();
            bridge::log_error!("kafka exporter: {left} reports not delivered at shutdown: {e}");
            self.producer
                .context()
                .stats
                .dropped
                .fetch_add(left.max(0) as u64, Relaxed);
        }
    }
}
