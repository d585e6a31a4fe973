//! Executors' I/O against real systems, one file per protocol: the shadow
//! runtime decides (pure engine), these carry the decision out.
//!
//! * [`http`]: the outbound HTTP(S) client every HTTP-speaking executor and
//!   pager shares (verified TLS, deadline, body cap).
//! * [`redfish`]: a spare's BMC (power, boot override, virtual media).
//! * [`haproxy`]: traffic shares and server states through HAProxy's
//!   runtime API, and the per-server counters the KPI gates read.
//! * [`rsync`]: state replication (snapshot, continuous passes, measured
//!   lag, cut-over barrier).
//! * [`switch`]: switch-port reconfiguration by SNMP SET, verified by
//!   read-back and undone on failure or rollback.
//! * [`mirror`]: request mirroring to the shadow through nginx's `mirror`
//!   module, the share passed on by HAProxy (a runtime map entry).
//! * [`compare`]: mirrored requests validated against the primary (status,
//!   body digest, latency on both).
//! * [`kubernetes`]: workload migration on Kubernetes through kube-rs
//!   (cordon, drain by the Eviction API honouring disruption budgets,
//!   uncordon).
//! * [`hook`]: workload migration through an orchestrator's own hook
//!   (a program or an HTTP endpoint), with the host → workloads map.

pub mod compare;
pub mod haproxy;
pub mod hook;
pub mod http;
pub mod kubernetes;
pub mod mirror;
pub mod redfish;
pub mod rsync;
pub mod switch;
