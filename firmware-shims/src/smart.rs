//! `smartctl --json` (smartmontools ≥ 7.0) output → a typed [`Report`].
//!
//! Decodes the parts failure prediction uses: identity (model, serial, WWN or
//! NVMe EUI-64, firmware), SMART overall status, power-on hours, power cycles,
//! temperature, the ATA attribute table (normalised, worst, threshold, raw),
//! the NVMe SMART/health log, self-test logs and the error-log count, plus
//! smartctl's exit-status bits.
//!
//! Decisions:
//! - The *raw* value of an ATA attribute is the leading integer of smartctl's
//!   `raw.string` (what `smartctl -A` prints and what Backblaze's
//!   `smart_N_raw` columns hold): it applies smartctl's drive database, so
//!   attribute 194 reads `26` rather than the packed 48-bit `98784247834`.
//!   When the string has no leading integer, `raw.value` is used.
//! - A device that `-n standby` left asleep is [`Outcome::Standby`], not an
//!   error: it was deliberately not woken.
//! - Exit-status bits 0 and 1 without data are errors; bits 2–7 describe the
//!   disk (failing status, thresholds crossed, logged errors) and come with
//!   the report.

use serde::Deserialize;

/// What one `smartctl -j` run produced.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    Report(Box<Report>),
    /// `-n standby` found the device in a low-power mode and did not wake it.
    Standby {
        device: String,
        mode: String,
    },
}

/// Decoded health of one device.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Report {
    /// The path smartctl opened (`/dev/sda`): not stable, never an identity.
    pub device: String,
    pub protocol: Protocol,
    pub identity: Identity,
    pub exit: ExitStatus,
    /// SMART overall-health self-assessment; `None` if not reported.
    pub smart_passed: Option<bool>,
    pub power_on_hours: Option<u64>,
    pub power_cycles: Option<u64>,
    pub temperature_c: Option<f64>,
    pub ata_attributes: Vec<AtaAttribute>,
    pub nvme: Option<NvmeHealth>,
    pub self_test: Option<SelfTests>,
    /// Errors recorded in the device's error log (ATA summary count, NVMe
    /// error-log entries).
    pub error_log_count: Option<u64>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Protocol {
    Ata,
    Nvme,
    Scsi,
    #[default]
    Other,
}

/// Identity as the device reports it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Identity {
    pub model: Option<String>,
    pub serial: Option<String>,
    pub firmware: Option<String>,
    /// World Wide Name as `/dev/disk/by-id` spells it: `wwn-0x5000c500a1b2c3d4`.
    pub wwn: Option<String>,
    /// First namespace's EUI-64 as `/dev/disk/by-id` spells it: `nvme-eui.00a0750100000052`.
    pub eui64: Option<String>,
}

impl Identity {
    /// A stable component id: WWN, then EUI-64, then model + serial. `None`
    /// when the device gives nothing stable (then the caller must not invent
    /// one from the device path, which changes across reboots).
    pub fn component_id(&self) -> Option<String> {
        if let Some(w) = &self.wwn {
            return Some(format!("disk:{w}"));
        }
        if let Some(e) = &self.eui64 {
            return Some(format!("disk:{e}"));
        }
        match (&self.model, &self.serial) {
            (Some(m), Some(s)) => Some(format!("disk:{}_{}", clean(m), clean(s))),
            _ => None,
        }
    }
}

fn clean(s: &str) -> String {
    s.trim()
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "-.".contains(c) {
                c
            } else {
                '_'
            }
        })
        .collect()
}

/// smartctl's exit status, bit by bit (smartctl(8), "RETURN VALUES").
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ExitStatus(pub u8);

impl ExitStatus {
    pub fn command_line_error(self) -> bool {
        self.0 & 1 != 0
    }
    /// Open failed, no IDENTIFY data, or (with `-n`) the device is asleep.
    pub fn open_failed_or_low_power(self) -> bool {
        self.0 & 2 != 0
    }
    pub fn smart_command_failed(self) -> bool {
        self.0 & 4 != 0
    }
    pub fn disk_failing(self) -> bool {
        self.0 & 8 != 0
    }
    pub fn prefail_at_threshold(self) -> bool {
        self.0 & 16 != 0
    }
    pub fn threshold_crossed_in_past(self) -> bool {
        self.0 & 32 != 0
    }
    pub fn error_log_has_errors(self) -> bool {
        self.0 & 64 != 0
    }
    pub fn self_test_log_has_errors(self) -> bool {
        self.0 & 128 != 0
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AtaAttribute {
    pub id: u8,
    pub name: String,
    /// Normalised value (vendor scale, usually 1..=253, higher is better).
    pub value: u8,
    pub worst: u8,
    pub thresh: u8,
    /// See the module doc for how it is chosen.
    pub raw: u64,
    pub prefailure: bool,
    /// "", "past" or "now" as smartctl reports `WHEN_FAILED`.
    pub when_failed: String,
}

/// NVMe SMART / Health Information log (NVMe base spec, log page 02h).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct NvmeHealth {
    pub critical_warning: u8,
    pub temperature_c: Option<i64>,
    pub available_spare: u8,
    pub available_spare_threshold: u8,
    pub percentage_used: u8,
    pub data_units_written: u64,
    pub data_units_read: u64,
    pub power_on_hours: u64,
    pub unsafe_shutdowns: u64,
    pub media_errors: u64,
    pub num_err_log_entries: u64,
}

/// Summary of the self-test log.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct SelfTests {
    pub total: u64,
    pub failed: u64,
    /// Outcome of the most recent completed test, if any.
    pub last_passed: Option<bool>,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SmartError {
    #[error("not smartctl JSON: {0}")]
    Json(String),
    #[error("no \"smartctl\" section: not smartctl --json output")]
    NotSmartctl,
    #[error("smartctl exit status {exit}: {}", messages.join("; "))]
    Failed { exit: u8, messages: Vec<String> },
}

/// Decode one `smartctl --json` document.
pub fn parse(bytes: &[u8]) -> Result<Outcome, SmartError> {
    let doc: Doc = serde_json::from_slice(bytes).map_err(|e| SmartError::Json(e.to_string()))?;
    let sc = doc.smartctl.ok_or(SmartError::NotSmartctl)?;
    let exit = ExitStatus(u8::try_from(sc.exit_status).unwrap_or(u8::MAX));
    let messages: Vec<String> = sc.messages.into_iter().map(|m| m.string).collect();
    let device = doc.device.unwrap_or_default();
    if exit.open_failed_or_low_power() {
        if let Some(mode) = messages.iter().find_map(|m| standby_mode(m)) {
            return Ok(Outcome::Standby {
                device: device.name,
                mode,
            });
        }
    }
    let has_data = doc.model_name.is_some() || doc.ata_smart_attributes.is_some();
    if exit.command_line_error() || (exit.open_failed_or_low_power() && !has_data) {
        return Err(SmartError::Failed {
            exit: exit.0,
            messages,
        });
    }
    let protocol = match device.protocol.as_str() {
        "ATA" => Protocol::Ata,
        "NVMe" => Protocol::Nvme,
        "SCSI" => Protocol::Scsi,
        _ => Protocol::Other,
    };
    let wwn = doc.wwn.map(|w| {
        format!(
            "wwn-0x{:016x}",
            (w.naa & 0xf) << 60 | (w.oui & 0xff_ffff) << 36 | (w.id & 0xf_ffff_ffff)
        )
    });
    let eui64 = doc
        .nvme_namespaces
        .iter()
        .find_map(|n| n.eui64.as_ref())
        .map(|e| {
            format!(
                "nvme-eui.{:016x}",
                (e.oui & 0xff_ffff) << 40 | (e.ext_id & 0xff_ffff_ffff)
            )
        });
    let nvme = doc.nvme_smart_health_information_log.map(|h| NvmeHealth {
        critical_warning: h.critical_warning,
        temperature_c: h.temperature,
        available_spare: h.available_spare,
        available_spare_threshold: h.available_spare_threshold,
        percentage_used: h.percentage_used,
        data_units_written: h.data_units_written,
        data_units_read: h.data_units_read,
        power_on_hours: h.power_on_hours,
        unsafe_shutdowns: h.unsafe_shutdowns,
        media_errors: h.media_errors,
        num_err_log_entries: h.num_err_log_entries,
    });
    let ata_attributes = doc
        .ata_smart_attributes
        .map(|t| t.table)
        .unwrap_or_default()
        .into_iter()
        .map(|a| AtaAttribute {
            raw: leading_integer(&a.raw.string).unwrap_or(a.raw.value),
            id: a.id,
            name: a.name,
            value: a.value,
            worst: a.worst,
            thresh: a.thresh,
            prefailure: a.flags.prefailure,
            when_failed: a.when_failed,
        })
        .collect();
    let self_test = self_tests(doc.ata_smart_self_test_log, doc.nvme_self_test_log);
    let error_log_count = doc
        .ata_smart_error_log
        .and_then(|l| l.summary)
        .map(|s| s.count)
        .or(nvme.as_ref().map(|n| n.num_err_log_entries));
    Ok(Outcome::Report(Box::new(Report {
        device: device.name,
        protocol,
        identity: Identity {
            model: nonempty(doc.model_name),
            serial: nonempty(doc.serial_number),
            firmware: nonempty(doc.firmware_version),
            wwn,
            eui64,
        },
        exit,
        smart_passed: doc.smart_status.and_then(|s| s.passed),
        power_on_hours: doc
            .power_on_time
            .map(|p| p.hours)
            .or(nvme.as_ref().map(|n| n.power_on_hours)),
        power_cycles: doc.power_cycle_count,
        temperature_c: doc
            .temperature
            .and_then(|t| t.current)
            .or(nvme.as_ref().and_then(|n| n.temperature_c))
            .map(|t| t as f64),
        ata_attributes,
        nvme,
        self_test,
        error_log_count,
    })))
}

/// A device found by `smartctl --json --scan-open`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScanDevice {
    pub name: String,
    /// smartctl's `-d` type (`sat`, `nvme`, `megaraid,0`, ...).
    pub kind: String,
}

/// Decode `smartctl --json --scan-open`.
pub fn parse_scan(bytes: &[u8]) -> Result<Vec<ScanDevice>, SmartError> {
    #[derive(Deserialize)]
    struct Scan {
        smartctl: Option<Smartctl>,
        #[serde(default)]
        devices: Vec<ScanJson>,
    }
    #[derive(Deserialize)]
    struct ScanJson {
        name: String,
        #[serde(default, rename = "type")]
        kind: String,
    }
    let scan: Scan = serde_json::from_slice(bytes).map_err(|e| SmartError::Json(e.to_string()))?;
    let sc = scan.smartctl.ok_or(SmartError::NotSmartctl)?;
    if sc.exit_status & 1 != 0 {
        return Err(SmartError::Failed {
            exit: u8::try_from(sc.exit_status).unwrap_or(u8::MAX),
            messages: sc.messages.into_iter().map(|m| m.string).collect(),
        });
    }
    Ok(scan
        .devices
        .into_iter()
        .map(|d| ScanDevice {
            name: d.name,
            kind: d.kind,
        })
        .collect())
}

/// "Device is in STANDBY mode, exit(2)" (also SLEEP, IDLE, "STANDBY (OS)").
fn standby_mode(message: &str) -> Option<String> {
    let rest = &message[message.find("Device is in ")? + "Device is in ".len()..];
    let mode = &rest[..rest.find(" mode")?];
    Some(mode.to_owned())
}

fn leading_integer(s: &str) -> Option<u64> {
    let digits: &str = &s[..s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len())];
    digits.parse().ok()
}

fn nonempty(s: Option<String>) -> Option<String> {
    s.map(|s| s.trim().to_owned()).filter(|s| !s.is_empty())
}

fn self_tests(ata: Option<AtaSelfTestLog>, nvme: Option<NvmeSelfTestLog>) -> Option<SelfTests> {
    if let Some(table) = ata.and_then(|l| l.standard).map(|s| s.table) {
        // Newest first in smartctl's table.
        let passed: Vec<Option<bool>> = table.iter().map(|e| e.status.passed).collect();
        return Some(SelfTests {
            total: table.len() as u64,
            failed: passed.iter().filter(|p| **p == Some(false)).count() as u64,
            last_passed: passed.into_iter().flatten().next(),
        });
    }
    let table = nvme?.table;
    // NVMe result code 0: completed without error; 0xF: entry not used.
    let results: Vec<u8> = table
        .iter()
        .map(|e| e.self_test_result.value)
        .filter(|&v| v != 0xf)
        .collect();
    Some(SelfTests {
        total: results.len() as u64,
        // 1 (aborted by command) and 2 (controller reset) are interruptions, not failures.
        failed: results.iter().filter(|&&v| v >= 3).count() as u64,
        last_passed: results.first().map(|&v| v == 0),
    })
}

// ---- wire form: only the fields used; everything optional, unknown ignored ----

#[derive(Deserialize)]
struct Doc {
    smartctl: Option<Smartctl>,
    device: Option<DeviceJson>,
    model_name: Option<String>,
    serial_number: Option<String>,
    firmware_version: Option<String>,
    wwn: Option<Wwn>,
    #[serde(default)]
    nvme_namespaces: Vec<NvmeNamespace>,
    smart_status: Option<SmartStatus>,
    power_on_time: Option<PowerOnTime>,
    power_cycle_count: Option<u64>,
    temperature: Option<Temperature>,
    ata_smart_attributes: Option<AtaAttributes>,
    nvme_smart_health_information_log: Option<NvmeHealthJson>,
    ata_smart_self_test_log: Option<AtaSelfTestLog>,
    nvme_self_test_log: Option<NvmeSelfTestLog>,
    ata_smart_error_log: Option<AtaErrorLog>,
}

#[derive(Deserialize)]
struct Smartctl {
    #[serde(default)]
    exit_status: u64,
    #[serde(default)]
    messages: Vec<Message>,
}

#[derive(Deserialize)]
struct Message {
    #[serde(default)]
    string: String,
}

#[derive(Deserialize, Default)]
struct DeviceJson {
    #[serde(default)]
    name: String,
    #[serde(default)]
    protocol: String,
}

#[derive(Deserialize)]
struct Wwn {
    naa: u64,
    oui: u64,
    id: u64,
}

#[derive(Deserialize)]
struct NvmeNamespace {
    eui64: Option<Eui64>,
}

#[derive(Deserialize)]
struct Eui64 {
    oui: u64,
    ext_id: u64,
}

#[derive(Deserialize)]
struct SmartStatus {
    passed: Option<bool>,
}

#[derive(Deserialize)]
struct PowerOnTime {
    #[serde(default)]
    hours: u64,
}

#[derive(Deserialize)]
struct Temperature {
    current: Option<i64>,
}

#[derive(Deserialize)]
struct AtaAttributes {
    #[serde(default)]
    table: Vec<AtaAttributeJson>,
}

#[derive(Deserialize)]
struct AtaAttributeJson {
    id: u8,
    #[serde(default)]
    name: String,
    #[serde(default)]
    value: u8,
    #[serde(default)]
    worst: u8,
    #[serde(default)]
    thresh: u8,
    #[serde(default)]
    when_failed: String,
    #[serde(default)]
    flags: AtaFlags,
    raw: Raw,
}

#[derive(Deserialize, Default)]
struct AtaFlags {
    #[serde(default)]
    prefailure: bool,
}

#[derive(Deserialize)]
struct Raw {
    #[serde(default)]
    value: u64,
    #[serde(default)]
    string: String,
}

#[derive(Deserialize)]
struct NvmeHealthJson {
    #[serde(default)]
    critical_warning: u8,
    temperature: Option<i64>,
    #[serde(default)]
    available_spare: u8,
    #[serde(default)]
    available_spare_threshold: u8,
    #[serde(default)]
    percentage_used: u8,
    #[serde(default)]
    data_units_read: u64,
    #[serde(default)]
    data_units_written: u64,
    #[serde(default)]
    power_on_hours: u64,
    #[serde(default)]
    unsafe_shutdowns: u64,
    #[serde(default)]
    media_errors: u64,
    #[serde(default)]
    num_err_log_entries: u64,
}

#[derive(Deserialize)]
struct AtaSelfTestLog {
    standard: Option<AtaSelfTestTable>,
}

#[derive(Deserialize)]
struct AtaSelfTestTable {
    #[serde(default)]
    table: Vec<AtaSelfTestEntry>,
}

#[derive(Deserialize)]
struct AtaSelfTestEntry {
    status: AtaSelfTestStatus,
}

#[derive(Deserialize)]
struct AtaSelfTestStatus {
    passed: Option<bool>,
}

#[derive(Deserialize)]
struct NvmeSelfTestLog {
    #[serde(default)]
    table: Vec<NvmeSelfTestEntry>,
}

#[derive(Deserialize)]
struct NvmeSelfTestEntry {
    self_test_result: NvmeSelfTestResult,
}

#[derive(Deserialize)]
struct NvmeSelfTestResult {
    value: u8,
}

#[derive(Deserialize)]
struct AtaErrorLog {
    summary: Option<AtaErrorSummary>,
}

#[derive(Deserialize)]
struct AtaErrorSummary {
    #[serde(default)]
    count: u64,
}

#[cfg(test)]
mod tests;
