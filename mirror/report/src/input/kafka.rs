//! The export read from a Kafka topic with the client the mirror's exporter uses (rdkafka).
//! A run reads what the topic holds when it starts (up to each partition's high watermark
//! then), so it ends by itself; `--group` makes runs continue one another.

use super::{LineFn, ReadInfo};
use crate::analysis::Origin;
use crate::progress::Progress;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::{ClientConfig, Message, Offset, TopicPartitionList};
use std::time::{Duration, Instant};

pub struct KafkaInput {
    pub broker: String,
    pub topic: String,
    pub group: Option<String>,
    pub timeout: Duration,
}

/// A partition to read: from `start` up to (not including) `end`.
struct Range {
    partition: i32,
    start: i64,
    end: i64,
}

fn consumer(k: &KafkaInput) -> Result<BaseConsumer, String> {
    let group = k
        .group
        .clone()
        .unwrap_or_else(|| format!("mirror-report-{}", std::process::id()));
    ClientConfig::new()
        .set("bootstrap.servers", &k.broker)
        .set("group.id", &group)
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false")
        .set("auto.offset.reset", "earliest")
        .set(
            "socket.timeout.ms",
            (k.timeout.as_millis().max(10) as u64).to_string(),
        )
        .create()
        .map_err(|e| format!("cannot create a Kafka consumer for {}: {e}", k.broker))
}

fn ranges(c: &BaseConsumer, k: &KafkaInput) -> Result<Vec<Range>, String> {
    let md = c.fetch_metadata(Some(&k.topic), k.timeout).map_err(|e| {
        format!(
            "cannot reach the Kafka broker {} within {:?}: {e}",
            k.broker, k.timeout
        )
    })?;
    let topic = md
        .topics()
        .iter()
        .find(|t| t.name() == k.topic)
        .ok_or_else(|| format!("the broker {} does not know topic '{}'", k.broker, k.topic))?;
    if let Some(e) = topic.error() {
        return Err(format!("topic '{}' on {}: {:?}", k.topic, k.broker, e));
    }
    if topic.partitions().is_empty() {
        return Err(format!(
            "topic '{}' on {} has no partitions",
            k.topic, k.broker
        ));
    }
    let mut committed = TopicPartitionList::new();
    for p in topic.partitions() {
        committed.add_partition(&k.topic, p.id());
    }
    let committed = if k.group.is_some() {
        c.committed_offsets(committed, k.timeout).map_err(|e| {
            format!(
                "cannot read the offsets of group '{}': {e}",
                k.group.as_deref().unwrap_or("")
            )
        })?
    } else {
        committed
    };
    let mut out = Vec::new();
    for p in topic.partitions() {
        let (low, high) = c
            .fetch_watermarks(&k.topic, p.id(), k.timeout)
            .map_err(|e| format!("cannot read the offsets of {}/{}: {e}", k.topic, p.id()))?;
        let start = match committed
            .find_partition(&k.topic, p.id())
            .map(|e| e.offset())
        {
            Some(Offset::Offset(o)) => o.max(low),
            _ => low,
        };
        out.push(Range {
            partition: p.id(),
            start,
            end: high,
        });
    }
    Ok(out)
}

/// How long a partition must stay quiet after its high watermark before it counts as read.
/// Some brokers report a watermark that lags the log (tansu gives the first offset of the
/// last batch), so reading goes on past it while older messages keep coming.
const QUIET: Duration = Duration::from_secs(1);

/// Where one partition's reading has got to.
struct Progressing {
    next: i64,
    /// Since when it has been at or past its watermark (refreshed by each later message).
    at_end_since: Option<Instant>,
    done: bool,
}

pub fn read(k: &KafkaInput, quiet: bool, on_line: &mut LineFn<'_>) -> Result<ReadInfo, String> {
    let c = consumer(k)?;
    let started_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(i64::MAX, |d| d.as_millis() as i64);
    let mut ranges = ranges(&c, k)?;
    let mut tpl = TopicPartitionList::new();
    for r in &ranges {
        tpl.add_partition_offset(&k.topic, r.partition, Offset::Offset(r.start))
            .map_err(|e| e.to_string())?;
    }
    c.assign(&tpl)
        .map_err(|e| format!("cannot read topic '{}': {e}", k.topic))?;
    let now = Instant::now();
    let mut state: Vec<Progressing> = ranges
        .iter()
        .map(|r| Progressing {
            next: r.start,
            at_end_since: (r.start >= r.end).then_some(now),
            done: false,
        })
        .collect();
    let mut info = ReadInfo {
        sources: vec![format!("kafka://{}/{}", k.broker, k.topic)],
        ..ReadInfo::default()
    };
    let mut progress = Progress::new(None, quiet);
    let mut last_message = Instant::now();
    while state.iter().any(|p| !p.done) {
        match c.poll(Duration::from_millis(100)) {
            Some(Ok(m)) => {
                last_message = Instant::now();
                let Some(i) = ranges.iter().position(|r| r.partition == m.partition()) else {
                    continue;
                };
                let (r, p) = (&ranges[i], &mut state[i]);
                let time_ms = m.timestamp().to_millis();
                if p.done || m.offset() < p.next {
                    continue;
                }
                if m.offset() >= r.end && time_ms.is_some_and(|t| t > started_ms) {
                    // Written after this run began: the next run's.
                    p.done = true;
                    continue;
                }
                p.next = m.offset() + 1;
                if p.next >= r.end {
                    p.at_end_since = Some(Instant::now());
                }
                let origin = Origin {
                    source: &k.topic,
                    line: m.offset() as u64,
                    time_ms,
                };
                // One report per message, as the exporter writes them; tolerate batches of lines.
                for line in m.payload().unwrap_or_default().split(|&b| b == b'\n') {
                    on_line(line, &origin);
                    progress.line(|| 0);
                }
            }
            Some(Err(e)) if last_message.elapsed() > k.timeout => {
                return Err(format!(
                    "reading topic '{}' from {} failed: {e}",
                    k.topic, k.broker
                ))
            }
            Some(Err(_)) => {}
            None if last_message.elapsed() > k.timeout
                && state.iter().any(|p| !p.done && p.at_end_since.is_none()) =>
            {
                let parts: Vec<String> = ranges
                    .iter()
                    .zip(&state)
                    .filter(|(_, p)| !p.done && p.at_end_since.is_none())
                    .map(|(r, _)| r.partition.to_string())
                    .collect();
                info.notes.push(format!(
                    "Kafka: no message for {:?}; partitions {} not read to their end",
                    k.timeout,
                    parts.join(", ")
                ));
                break;
            }
            None => {}
        }
        for p in state.iter_mut().filter(|p| !p.done) {
            if p.at_end_since.is_some_and(|t| t.elapsed() >= QUIET) {
                p.done = true;
            }
        }
    }
    progress.finish();
    if k.group.is_some() {
        for (r, p) in ranges.iter_mut().zip(&state) {
            r.start = p.next;
        }
        commit(&c, k, &ranges)?;
    }
    Ok(info)
}

/// Records, for the group, that each partition was read up to `start` (where this run stopped).
fn commit(c: &BaseConsumer, k: &KafkaInput, reached: &[Range]) -> Result<(), String> {
    let mut tpl = TopicPartitionList::new();
    for r in reached {
        tpl.add_partition_offset(&k.topic, r.partition, Offset::Offset(r.start))
            .map_err(|e| e.to_string())?;
    }
    c.commit(&tpl, CommitMode::Sync).map_err(|e| {
        format!(
            "cannot commit the offsets of group '{}': {e}",
            k.group.as_deref().unwrap_or("")
        )
    })
}
