//! What rebox records in `ActionResult.execution_metadata` beyond REAPI's timestamps.
//!
//! `auxiliary_metadata` may hold, as `google.protobuf.Any`:
//! - [`ExecutionStatistics`] (type URL [`STATISTICS_TYPE_URL`]), with `--collect-execution-stats`:
//!   the resource usage of the whole sandbox;
//! - a `google.rpc.Status` (type URL [`STATUS_TYPE_URL`]) with code `DEADLINE_EXCEEDED` when the
//!   action's timeout expired: the sandbox was killed, the outputs it left were captured, and the
//!   runner exits with [`super::TIMEOUT_EXIT_CODE`]. A worker forwards that as DEADLINE_EXCEEDED.

use std::time::SystemTime;

use prost::Message;
use rebox_runner_spec::ResourceUsage;

use crate::proto::google::rpc;

/// The type URL of [`ExecutionStatistics`] in `auxiliary_metadata`.
pub const STATISTICS_TYPE_URL: &str = "type.googleapis.com/rebox.v1.ExecutionStatistics";
/// The type URL of a `google.rpc.Status` in `auxiliary_metadata`.
pub const STATUS_TYPE_URL: &str = "type.googleapis.com/google.rpc.Status";

/// Resource usage of every process of the sandbox (`rebox.v1.ExecutionStatistics`):
///
/// ```proto
/// message ExecutionStatistics {
///   google.protobuf.Duration user_time = 1;
///   google.protobuf.Duration system_time = 2;
///   uint64 max_rss_kib = 3;            // largest resident set of any process
///   uint64 minor_faults = 4;
///   uint64 major_faults = 5;
///   uint64 voluntary_switches = 6;
///   uint64 involuntary_switches = 7;
/// }
/// ```
#[derive(Clone, PartialEq, Message)]
pub struct ExecutionStatistics {
    /// User CPU time.
    #[prost(message, optional, tag = "1")]
    pub user_time: Option<prost_types::Duration>,
    /// System CPU time.
    #[prost(message, optional, tag = "2")]
    pub system_time: Option<prost_types::Duration>,
    /// Largest resident set size of any process, in KiB.
    #[prost(uint64, tag = "3")]
    pub max_rss_kib: u64,
    /// Minor page faults.
    #[prost(uint64, tag = "4")]
    pub minor_faults: u64,
    /// Major page faults.
    #[prost(uint64, tag = "5")]
    pub major_faults: u64,
    /// Voluntary context switches.
    #[prost(uint64, tag = "6")]
    pub voluntary_switches: u64,
    /// Involuntary context switches.
    #[prost(uint64, tag = "7")]
    pub involuntary_switches: u64,
}

impl From<&ResourceUsage> for ExecutionStatistics {
    fn from(usage: &ResourceUsage) -> Self {
        let duration = |d: std::time::Duration| prost_types::Duration {
            seconds: d.as_secs() as i64,
            nanos: d.subsec_nanos() as i32,
        };
        Self {
            user_time: Some(duration(usage.user_time)),
            system_time: Some(duration(usage.system_time)),
            max_rss_kib: usage.max_rss_kib,
            minor_faults: usage.minor_faults,
            major_faults: usage.major_faults,
            voluntary_switches: usage.voluntary_switches,
            involuntary_switches: usage.involuntary_switches,
        }
    }
}

/// `usage` as an `Any`.
pub fn statistics(usage: &ResourceUsage) -> prost_types::Any {
    prost_types::Any {
        type_url: STATISTICS_TYPE_URL.to_owned(),
        value: ExecutionStatistics::from(usage).encode_to_vec(),
    }
}

/// The DEADLINE_EXCEEDED status of a timed-out action, as an `Any`.
pub fn deadline_exceeded(timeout: std::time::Duration) -> prost_types::Any {
    let status = rpc::Status {
        code: tonic::Code::DeadlineExceeded as i32,
        message: format!("the action's timeout of {timeout:?} expired: the sandbox was killed"),
        details: Vec::new(),
    };
    prost_types::Any { type_url: STATUS_TYPE_URL.to_owned(), value: status.encode_to_vec() }
}

/// The time now, as a protobuf Timestamp.
pub fn now() -> prost_types::Timestamp {
    prost_types::Timestamp::from(SystemTime::now())
}
