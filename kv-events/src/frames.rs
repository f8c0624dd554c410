//! ZMQ multipart frames of live messages and of the replay protocol, in every vLLM version.
//!
//! Live: `[topic, seq (u64 BE), payload]`. Replay request (DEALER to ROUTER):
//! `[b"", start_seq (u64 BE)]`. Replies from 0.26 on: `[b"", topic, seq, payload]`, ended by
//! `[b"", b"", ff*8, b""]`; up to 0.25: `[b"", seq, payload]`, ended by `[b"", ff*8, b""]`.

use crate::error::KvEventsError;

/// One multipart message.
pub type Frames = Vec<Vec<u8>>;

/// The sequence number that marks the end of a replay.
pub const END_SEQ: u64 = u64::MAX;

/// A live message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    /// The topic frame (vLLM's `topic`, often empty).
    pub topic: Vec<u8>,
    /// Sequence number, from 0 per engine start.
    pub seq: u64,
    /// msgpack-encoded [`crate::EventBatch`].
    pub payload: Vec<u8>,
}

/// Which replay reply layout a publisher speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ReplayVersion {
    /// Up to vLLM 0.25: `[b"", seq, payload]`.
    Legacy,
    /// vLLM 0.26 and later: `[b"", topic, seq, payload]`.
    #[default]
    WithTopic,
}

/// One replay reply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReplayReply {
    /// A buffered batch.
    Batch {
        /// Its sequence number.
        seq: u64,
        /// Its payload.
        payload: Vec<u8>,
    },
    /// No more batches.
    End,
}

fn seq_of(frame: &[u8]) -> Result<u64, KvEventsError> {
    let bytes: [u8; 8] = frame
        .try_into()
        .map_err(|_| KvEventsError::Decode(format!("sequence frame of {} bytes", frame.len())))?;
    Ok(u64::from_be_bytes(bytes))
}

impl Message {
    /// The three frames on the wire.
    pub fn to_frames(&self) -> Frames {
        vec![
            self.topic.clone(),
            self.seq.to_be_bytes().to_vec(),
            self.payload.clone(),
        ]
    }

    /// Parses `[topic, seq, payload]`.
    pub fn from_frames(mut frames: Frames) -> Result<Self, KvEventsError> {
        if frames.len() != 3 {
            return Err(KvEventsError::Decode(format!(
                "live message has {} frames, expected 3",
                frames.len()
            )));
        }
        let payload = frames.pop().unwrap_or_default();
        let seq = seq_of(&frames[1])?;
        let topic = std::mem::take(&mut frames[0]);
        Ok(Self {
            topic,
            seq,
            payload,
        })
    }
}

/// The DEALER's request: replay from `start_seq` on.
pub fn replay_request(start_seq: u64) -> Frames {
    vec![Vec::new(), start_seq.to_be_bytes().to_vec()]
}

/// Parses a replay request as the ROUTER sees it after the peer identity: `[b"", start_seq]`
/// (a request without the empty delimiter is accepted too).
pub fn parse_replay_request(frames: &[Vec<u8>]) -> Result<u64, KvEventsError> {
    match frames {
        [empty, seq] if empty.is_empty() => seq_of(seq),
        [seq] => seq_of(seq),
        _ => Err(KvEventsError::Decode(format!(
            "replay request has {} frames",
            frames.len()
        ))),
    }
}

/// The frames of one reply (`None` = the end marker) in `version`'s layout.
pub fn replay_reply(version: ReplayVersion, topic: &[u8], batch: Option<(u64, &[u8])>) -> Frames {
    let (seq, payload) = batch.unwrap_or((END_SEQ, &[]));
    let mut frames = vec![Vec::new()];
    if version == ReplayVersion::WithTopic {
        frames.push(if batch.is_some() {
            topic.to_vec()
        } else {
            Vec::new()
        });
    }
    frames.push(seq.to_be_bytes().to_vec());
    frames.push(payload.to_vec());
    frames
}

/// Parses a reply as a DEALER receives it, in either version's layout.
pub fn parse_replay_reply(mut frames: Frames) -> Result<ReplayReply, KvEventsError> {
    if frames.first().is_some_and(|f| f.is_empty()) {
        frames.remove(0);
    }
    let (seq, payload) = match frames.len() {
        // 0.26+: topic, seq, payload.
        3 => (seq_of(&frames[1])?, frames.pop().unwrap_or_default()),
        // Up to 0.25: seq, payload.
        2 => (seq_of(&frames[0])?, frames.pop().unwrap_or_default()),
        n => {
            return Err(KvEventsError::Decode(format!(
                "replay reply has {n} frames after the delimiter"
            )));
        }
    };
    Ok(if seq == END_SEQ {
        ReplayReply::End
    } else {
        ReplayReply::Batch { seq, payload }
    })
}
