//! IPMI 2.0: the RMCP+ LAN session layer ([`lan`]) and the Sensor Data
//! Repository with sensor readings ([`sdr`]). I/O-free; the agent's UDP
//! transport drives them.

pub mod lan;
pub mod sdr;
pub mod sel;
