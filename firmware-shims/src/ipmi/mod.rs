//! IPMI 2.0 decoding: the Sensor Data Repository and sensor readings. The
//! RMCP+ session layer and the agent's transports are still to come (issue 3).

pub mod sdr;
