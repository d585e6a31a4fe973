//! What a hostile agent can send: arbitrary bytes as an `AgentMessage` through
//! prost, as the coordinator's gRPC codec does. Decoding must fail cleanly or
//! produce a message that re-encodes.
#![no_main]

use libfuzzer_sys::fuzz_target;
use prost::Message;
use proto::telemetry::v1 as pb;

fuzz_target!(|data: &[u8]| {
    if let Ok(m) = pb::AgentMessage::decode(data) {
        let _ = pb::AgentMessage::decode(m.encode_to_vec().as_slice()).expect("re-encodes");
    }
});
