//! Redfish (DMTF DSP0266) against a spare's BMC: discover systems, power
//! with read-back until the state settles, one-time boot override, virtual
//! media, health, and the chassis' thermal and power readings (a spare whose
//! BMC reports Health Critical or a reading past its critical threshold is
//! not provisioned). Every operation opens its own authorisation (Basic, or a
//! `SessionService` session that is deleted on every path out) and retries
//! transient failures (connection errors, timeouts, 5xx) with exponential
//! backoff; 4xx answers are the caller's mistake and are not retried.
//!
//! Operations are state-based: asking for `On` when the system is on, or for
//! an image that is already inserted, does nothing, so a lifecycle step can
//! be repeated after a coordinator restart.

use super::http::{basic_auth, Client, HttpError, Response, Retry};
use http::header::{HeaderName, HeaderValue, AUTHORIZATION};
use http::{Method, StatusCode};
use serde::Deserialize;
use serde_json::{json, Value};
use service::secret::Secret;
use std::path::PathBuf;
use std::time::{Duration, Instant};

/// `[shadow.spares.bmc]`: how to reach one BMC.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RedfishConfig {
    /// Base URL: `https://bmc7.example.net` (the service root is
    /// `/redfish/v1` under it).
    pub url: String,
    pub username: String,
    pub password: Secret,
    /// `basic` sends the credentials with every request; `session` logs in
    /// through the SessionService and deletes the session afterwards.
    #[serde(default)]
    pub auth: AuthMode,
    /// CA bundle that signed the BMC's certificate; the system bundle when
    /// unset. Certificates are always verified.
    pub ca_file: Option<PathBuf>,
    /// Per request.
    #[serde(default = "default_timeout", with = "humantime_serde")]
    pub timeout: Duration,
    /// Further tries of a request that failed transiently.
    #[serde(default = "default_retries")]
    pub retries: u32,
    /// How long a power change may take to show in `PowerState`.
    #[serde(default = "default_settle", with = "humantime_serde")]
    pub settle_timeout: Duration,
    #[serde(default = "default_poll", with = "humantime_serde")]
    pub poll_interval: Duration,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum AuthMode {
    #[default]
    Basic,
    Session,
}

fn default_timeout() -> Duration {
    Duration::from_secs(10)
}
const fn default_retries() -> u32 {
    3
}
fn default_settle() -> Duration {
    Duration::from_secs(120)
}
fn default_poll() -> Duration {
    Duration::from_secs(1)
}

/// First wait between retries; doubles each time.
const BACKOFF: Duration = Duration::from_millis(250);

#[derive(Debug, thiserror::Error)]
pub enum RedfishError {
    #[error(transparent)]
    Http(#[from] HttpError),
    #[error("{method} {path}: HTTP {status}{}", message.as_deref().map(|m| format!(": {m}")).unwrap_or_default())]
    Status {
        method: Method,
        path: String,
        status: StatusCode,
        message: Option<String>,
    },
    #[error("{path}: {what}")]
    Schema { path: String, what: String },
    #[error("no system {0:?} on this BMC (by Id, Name or UUID)")]
    NoSystem(String),
    #[error("system {system}: PowerState still {last:?} after {waited:?}, wanted {want}")]
    Settle {
        system: String,
        want: &'static str,
        last: String,
        waited: Duration,
    },
    #[error("system {system}: {what}")]
    ReadBack { system: String, what: String },
    #[error("system {system}: {why}; refusing to provision it")]
    Unhealthy { system: String, why: String },
}

/// One chassis sensor (`Thermal` temperatures and fans, `Power` control,
/// supplies and voltages).
#[derive(Debug, Clone, PartialEq)]
pub struct Reading {
    pub name: String,
    pub value: f64,
    /// "Cel", "RPM", "W" or "V".
    pub unit: &'static str,
    /// `Status.Health`, empty when the BMC does not say.
    pub health: String,
    /// `UpperThresholdCritical`, where given.
    pub critical_above: Option<f64>,
}

/// A system's health and its chassis' readings.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Readings {
    pub health: String,
    pub temperatures: Vec<Reading>,
    pub fans: Vec<Reading>,
    pub power: Vec<Reading>,
}

impl Readings {
    /// Why the system should take no work: Health Critical, or a sensor
    /// that reports Critical or reads at or past its critical threshold.
    pub fn refusal(&self) -> Option<String> {
        if self.health == "Critical" {
            return Some("Health Critical".into());
        }
        self.temperatures
            .iter()
            .chain(&self.fans)
            .chain(&self.power)
            .find_map(|r| {
                if r.health == "Critical" {
                    Some(format!("{} reports Health Critical", r.name))
                } else {
                    r.critical_above.filter(|c| r.value >= *c).map(|c| {
                        format!("{} reads {} {} (critical at {c})", r.name, r.value, r.unit)
                    })
                }
            })
    }
}

/// The readings in `list` (an array of sensor objects) whose `field` is a
/// number; the others (absent, null, text) are left out.
fn readings_of(list: &Value, field: &str, unit: &'static str) -> Vec<Reading> {
    list.as_array()
        .into_iter()
        .flatten()
        .filter_map(|s| {
            let value = s[field].as_f64().filter(|v| v.is_finite())?;
            Some(Reading {
                name: s["Name"]
                    .as_str()
                    .or_else(|| s["MemberId"].as_str())
                    .unwrap_or("?")
                    .to_owned(),
                value,
                unit,
                health: s["Status"]["Health"]
                    .as_str()
                    .unwrap_or_default()
                    .to_owned(),
                critical_above: s["UpperThresholdCritical"].as_f64(),
            })
        })
        .collect()
}

/// Temperatures and fans of a `Thermal` resource.
pub fn parse_thermal(v: &Value) -> (Vec<Reading>, Vec<Reading>) {
    (
        readings_of(&v["Temperatures"], "ReadingCelsius", "Cel"),
        readings_of(&v["Fans"], "Reading", "RPM"),
    )
}

/// Power drawn, supplies' output and voltages of a `Power` resource.
pub fn parse_power(v: &Value) -> Vec<Reading> {
    let mut out = readings_of(&v["PowerControl"], "PowerConsumedWatts", "W");
    out.extend(readings_of(
        &v["PowerSupplies"],
        "LastPowerOutputWatts",
        "W",
    ));
    out.extend(readings_of(&v["Voltages"], "ReadingVolts", "V"));
    out
}

/// What `systems()` reports of one ComputerSystem.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct System {
    /// `@odata.id`, the resource path.
    pub path: String,
    pub id: String,
    pub name: String,
    pub uuid: String,
    pub power_state: String,
    /// `Status.Health`, empty when the BMC does not say.
    pub health: String,
}

impl System {
    fn from_json(path: &str, v: &Value) -> System {
        let s = |k: &str| v[k].as_str().unwrap_or_default().to_owned();
        System {
            path: v["@odata.id"].as_str().unwrap_or(path).to_owned(),
            id: s("Id"),
            name: s("Name"),
            uuid: s("UUID"),
            power_state: s("PowerState"),
            health: v["Status"]["Health"]
                .as_str()
                .unwrap_or_default()
                .to_owned(),
        }
    }

    fn matches(&self, key: &str) -> bool {
        [&self.id, &self.name, &self.uuid].iter().any(|v| *v == key)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Power {
    On,
    Off,
}

impl Power {
    fn state(self) -> &'static str {
        match self {
            Power::On => "On",
            Power::Off => "Off",
        }
    }
}

/// One BMC.
#[derive(Debug, Clone)]
pub struct Redfish {
    http: Client,
    base: String,
    username: String,
    password: Secret,
    auth: AuthMode,
    retries: u32,
    settle_timeout: Duration,
    poll_interval: Duration,
}

/// An authorised conversation; [`Redfish::close`] ends a session.
#[derive(Debug)]
pub struct Conn<'a> {
    bmc: &'a Redfish,
    auth: HeaderValue,
    /// The session resource to delete, when logged in through one.
    session: Option<String>,
}

impl Redfish {
    pub fn new(cfg: &RedfishConfig) -> Result<Redfish, RedfishError> {
        Ok(Redfish {
            http: Client::new(cfg.ca_file.as_deref(), cfg.timeout)?,
            base: cfg.url.trim_end_matches('/').to_owned(),
            username: cfg.username.clone(),
            password: cfg.password.clone(),
            auth: cfg.auth,
            retries: cfg.retries,
            settle_timeout: cfg.settle_timeout,
            poll_interval: cfg.poll_interval,
        })
    }

    /// Authorise: Basic needs nothing from the BMC; a session is created
    /// through the SessionService (its link from the service root).
    pub async fn open(&self) -> Result<Conn<'_>, RedfishError> {
        let basic = basic_auth(&self.username, self.password.expose());
        if self.auth == AuthMode::Basic {
            return Ok(Conn {
                bmc: self,
                auth: basic,
                session: None,
            });
        }
        let root = self.request(Method::GET, "/redfish/v1", None, None).await?;
        let sessions = root
            .json()
            .and_then(|v| {
                v["Links"]["Sessions"]["@odata.id"]
                    .as_str()
                    .map(str::to_owned)
            })
            .unwrap_or_else(|| "/redfish/v1/SessionService/Sessions".to_owned());
        let body = json!({ "UserName": self.username, "Password": self.password.expose() });
        let r = self
            .request(Method::POST, &sessions, None, Some(&body))
            .await?;
        let token = r
            .header("x-auth-token")
            .ok_or_else(|| RedfishError::Schema {
                path: sessions.clone(),
                what: "session created without an X-Auth-Token header".into(),
            })?;
        let mut auth = HeaderValue::from_str(token).map_err(|_| RedfishError::Schema {
            path: sessions.clone(),
            what: "X-Auth-Token is not a valid header value".into(),
        })?;
        auth.set_sensitive(true);
        let location = r.header("location").map(str::to_owned).or_else(|| {
            r.json()
                .and_then(|v| v["@odata.id"].as_str().map(str::to_owned))
        });
        Ok(Conn {
            bmc: self,
            auth,
            session: location.map(|l| self.path_of(&l)),
        })
    }

    /// End the conversation: delete the session (errors are logged, the
    /// session would expire on the BMC anyway).
    pub async fn close(&self, conn: Conn<'_>) {
        if let Some(session) = &conn.session {
            if let Err(e) = conn.call(Method::DELETE, session, None).await {
                tracing::warn!(bmc = %self.base, %session, error = %e, "deleting the Redfish session failed");
            }
        }
    }

    /// `Location` may be absolute (`https://bmc/redfish/v1/...`) or a path.
    fn path_of(&self, location: &str) -> String {
        location
            .strip_prefix(&self.base)
            .map(str::to_owned)
            .or_else(|| location.find("/redfish/").map(|i| location[i..].to_owned()))
            .unwrap_or_else(|| location.to_owned())
    }

    /// One request with retries; any 2xx is success.
    async fn request(
        &self,
        method: Method,
        path: &str,
        auth: Option<(&HeaderName, &HeaderValue)>,
        body: Option<&Value>,
    ) -> Result<Response, RedfishError> {
        let url = format!("{}{}", self.base, path);
        let headers: Vec<(HeaderName, HeaderValue)> = auth
            .map(|(k, v)| (k.clone(), v.clone()))
            .into_iter()
            .chain([(
                HeaderName::from_static("odata-version"),
                HeaderValue::from_static("4.0"),
            )])
            .collect();
        let body = body.map(|b| serde_json::to_vec(b).expect("JSON values serialise"));
        let r = self
            .http
            .send_retrying(
                method.clone(),
                &url,
                &headers,
                body.as_deref(),
                Retry {
                    retries: self.retries,
                    backoff: BACKOFF,
                },
                |s| s.is_server_error(),
            )
            .await?;
        if !r.status.is_success() {
            return Err(RedfishError::Status {
                method,
                path: path.to_owned(),
                status: r.status,
                message: error_message(&r),
            });
        }
        Ok(r)
    }

    /// Every system on this BMC.
    pub async fn systems(&self, c: &Conn<'_>) -> Result<Vec<System>, RedfishError> {
        let root = c.get("/redfish/v1").await?;
        let coll = root["Systems"]["@odata.id"]
            .as_str()
            .unwrap_or("/redfish/v1/Systems")
            .to_owned();
        let members = c.get(&coll).await?;
        let mut out = Vec::new();
        for m in members["Members"].as_array().into_iter().flatten() {
            let Some(path) = m["@odata.id"].as_str() else {
                continue;
            };
            let v = c.get(path).await?;
            out.push(System::from_json(path, &v));
        }
        Ok(out)
    }

    /// The system whose Id, Name or UUID is `key`.
    pub async fn system(&self, c: &Conn<'_>, key: &str) -> Result<System, RedfishError> {
        self.systems(c)
            .await?
            .into_iter()
            .find(|s| s.matches(key))
            .ok_or_else(|| RedfishError::NoSystem(key.to_owned()))
    }

    /// Power the system on or off and wait until `PowerState` says so.
    pub async fn set_power(
        &self,
        c: &Conn<'_>,
        sys: &System,
        want: Power,
    ) -> Result<(), RedfishError> {
        let v = c.get(&sys.path).await?;
        if v["PowerState"].as_str() == Some(want.state()) {
            return Ok(());
        }
        let action = &v["Actions"]["#ComputerSystem.Reset"];
        let target = action["target"].as_str().map_or_else(
            || format!("{}/Actions/ComputerSystem.Reset", sys.path),
            str::to_owned,
        );
        let allowed: Vec<&str> = action["ResetType@Redfish.AllowableValues"]
            .as_array()
            .map(|a| a.iter().filter_map(Value::as_str).collect())
            .unwrap_or_default();
        // Spares have no workload to shut down gracefully: force off.
        let prefer: &[&str] = match want {
            Power::On => &["On", "ForceOn"],
            Power::Off => &["ForceOff", "GracefulShutdown"],
        };
        let reset = prefer
            .iter()
            .find(|t| allowed.is_empty() || allowed.contains(t))
            .ok_or_else(|| RedfishError::Schema {
                path: target.clone(),
                what: format!("no ResetType for {} among {allowed:?}", want.state()),
            })?;
        c.post(&target, &json!({ "ResetType": reset })).await?;
        self.wait_power(c, sys, want).await
    }

    async fn wait_power(
        &self,
        c: &Conn<'_>,
        sys: &System,
        want: Power,
    ) -> Result<(), RedfishError> {
        let start = Instant::now();
        loop {
            let v = c.get(&sys.path).await?;
            let state = v["PowerState"].as_str().unwrap_or_default();
            if state == want.state() {
                return Ok(());
            }
            if start.elapsed() >= self.settle_timeout {
                return Err(RedfishError::Settle {
                    system: sys.name.clone(),
                    want: want.state(),
                    last: state.to_owned(),
                    waited: start.elapsed(),
                });
            }
            tokio::time::sleep(self.poll_interval).await;
        }
    }

    /// Boot from `target` (e.g. "Cd", "Pxe") on the next boot, verified by
    /// reading it back.
    pub async fn boot_once(
        &self,
        c: &Conn<'_>,
        sys: &System,
        target: &str,
    ) -> Result<(), RedfishError> {
        c.patch(
            &sys.path,
            &json!({ "Boot": { "BootSourceOverrideTarget": target, "BootSourceOverrideEnabled": "Once" } }),
        )
        .await?;
        let v = c.get(&sys.path).await?;
        let boot = &v["Boot"];
        if boot["BootSourceOverrideTarget"].as_str() != Some(target) {
            return Err(RedfishError::ReadBack {
                system: sys.name.clone(),
                what: format!(
                    "BootSourceOverrideTarget is {} after setting {target}",
                    boot["BootSourceOverrideTarget"]
                ),
            });
        }
        if boot["BootSourceOverrideEnabled"].as_str() != Some("Once") {
            // Some BMCs (sushy-tools' fake driver among them) keep
            // "Continuous"; the target is what matters for the next boot.
            tracing::warn!(
                system = %sys.name, enabled = %boot["BootSourceOverrideEnabled"],
                "BMC did not keep BootSourceOverrideEnabled=Once"
            );
        }
        Ok(())
    }

    /// The system's CD/DVD virtual media resource: linked from the system,
    /// or from the manager that manages it.
    async fn cd_media(&self, c: &Conn<'_>, sys: &System) -> Result<(String, Value), RedfishError> {
        let v = c.get(&sys.path).await?;
        let mut collections: Vec<String> = v["VirtualMedia"]["@odata.id"]
            .as_str()
            .map(str::to_owned)
            .into_iter()
            .collect();
        for m in v["Links"]["ManagedBy"].as_array().into_iter().flatten() {
            if let Some(p) = m["@odata.id"].as_str() {
                if let Some(vm) = c.get(p).await?["VirtualMedia"]["@odata.id"].as_str() {
                    collections.push(vm.to_owned());
                }
            }
        }
        for coll in collections {
            let members = c.get(&coll).await?;
            for m in members["Members"].as_array().into_iter().flatten() {
                let Some(path) = m["@odata.id"].as_str() else {
                    continue;
                };
                let media = c.get(path).await?;
                let types = media["MediaTypes"].as_array().into_iter().flatten();
                if types
                    .filter_map(Value::as_str)
                    .any(|t| t == "CD" || t == "DVD")
                {
                    return Ok((path.to_owned(), media));
                }
            }
        }
        Err(RedfishError::Schema {
            path: sys.path.clone(),
            what: "no virtual media device that takes a CD or DVD".into(),
        })
    }

    fn media_action(path: &str, media: &Value, name: &str) -> String {
        media["Actions"][format!("#VirtualMedia.{name}")]["target"]
            .as_str()
            .map_or_else(
                || format!("{path}/Actions/VirtualMedia.{name}"),
                str::to_owned,
            )
    }

    /// Insert `image` (a URL the BMC downloads) into the virtual CD,
    /// ejecting another image first; verified by reading it back. False
    /// when the image was already inserted (nothing was done).
    pub async fn insert_media(
        &self,
        c: &Conn<'_>,
        sys: &System,
        image: &str,
    ) -> Result<bool, RedfishError> {
        let (path, media) = self.cd_media(c, sys).await?;
        let inserted = media["Inserted"].as_bool() == Some(true);
        if inserted && media["Image"].as_str() == Some(image) {
            return Ok(false);
        }
        if inserted {
            c.post(&Self::media_action(&path, &media, "EjectMedia"), &json!({}))
                .await?;
        }
        c.post(
            &Self::media_action(&path, &media, "InsertMedia"),
            &json!({ "Image": image, "Inserted": true, "WriteProtected": true }),
        )
        .await?;
        let after = c.get(&path).await?;
        if after["Inserted"].as_bool() != Some(true) || after["Image"].as_str() != Some(image) {
            return Err(RedfishError::ReadBack {
                system: sys.name.clone(),
                what: format!(
                    "virtual media shows Image {} Inserted {} after inserting {image}",
                    after["Image"], after["Inserted"]
                ),
            });
        }
        Ok(true)
    }

    /// Eject whatever is in the virtual CD (nothing to do when empty).
    pub async fn eject_media(&self, c: &Conn<'_>, sys: &System) -> Result<(), RedfishError> {
        let (path, media) = self.cd_media(c, sys).await?;
        if media["Inserted"].as_bool() != Some(true) {
            return Ok(());
        }
        c.post(&Self::media_action(&path, &media, "EjectMedia"), &json!({}))
            .await?;
        let after = c.get(&path).await?;
        if after["Inserted"].as_bool() == Some(true) {
            return Err(RedfishError::ReadBack {
                system: sys.name.clone(),
                what: "virtual media still inserted after EjectMedia".into(),
            });
        }
        Ok(())
    }

    /// Bring a spare up on the provisioning image: refuse a critical one,
    /// insert the image, boot from it once, power on (off first when it
    /// was running, so it boots the image), wait until on.
    pub async fn provision(&self, system: &str, image: &str) -> Result<System, RedfishError> {
        let c = self.open().await?;
        let r = self.provision_in(&c, system, image).await;
        self.close(c).await;
        r
    }

    async fn provision_in(
        &self,
        c: &Conn<'_>,
        system: &str,
        image: &str,
    ) -> Result<System, RedfishError> {
        let sys = self.system(c, system).await?;
        if let Some(why) = self.readings_in(c, &sys).await?.refusal() {
            return Err(RedfishError::Unhealthy {
                system: sys.name,
                why,
            });
        }
        let inserted = self.insert_media(c, &sys, image).await?;
        // Repeated after a restart: already on and booted from the image.
        if !inserted && sys.power_state == "On" {
            return Ok(sys);
        }
        self.boot_once(c, &sys, "Cd").await?;
        if sys.power_state == "On" {
            self.set_power(c, &sys, Power::Off).await?;
        }
        self.set_power(c, &sys, Power::On).await?;
        Ok(System::from_json(&sys.path, &c.get(&sys.path).await?))
    }

    /// The system's health and its chassis' thermal and power readings
    /// (those the BMC offers: a chassis without `Thermal` or `Power` has
    /// none of that kind).
    pub async fn readings(&self, system: &str) -> Result<Readings, RedfishError> {
        let c = self.open().await?;
        let r = async {
            let sys = self.system(&c, system).await?;
            self.readings_in(&c, &sys).await
        }
        .await;
        self.close(c).await;
        r
    }

    async fn readings_in(&self, c: &Conn<'_>, sys: &System) -> Result<Readings, RedfishError> {
        let v = c.get(&sys.path).await?;
        let mut out = Readings {
            health: sys.health.clone(),
            ..Readings::default()
        };
        for chassis in v["Links"]["Chassis"].as_array().into_iter().flatten() {
            let Some(path) = chassis["@odata.id"].as_str() else {
                continue;
            };
            let ch = c.get(path).await?;
            if let Some(t) = ch["Thermal"]["@odata.id"].as_str() {
                let (temps, fans) = parse_thermal(&c.get(t).await?);
                out.temperatures.extend(temps);
                out.fans.extend(fans);
            }
            if let Some(p) = ch["Power"]["@odata.id"].as_str() {
                out.power.extend(parse_power(&c.get(p).await?));
            }
        }
        Ok(out)
    }

    /// Give a spare back: eject the image and power it off.
    pub async fn release(&self, system: &str) -> Result<(), RedfishError> {
        let c = self.open().await?;
        let r = async {
            let sys = self.system(&c, system).await?;
            self.eject_media(&c, &sys).await?;
            self.set_power(&c, &sys, Power::Off).await
        }
        .await;
        self.close(c).await;
        r
    }
}

impl Conn<'_> {
    fn auth_header(&self) -> (&HeaderName, &HeaderValue) {
        static TOKEN: HeaderName = HeaderName::from_static("x-auth-token");
        // A session's token (only session auth opens one), else Basic.
        if self.bmc.auth == AuthMode::Session {
            (&TOKEN, &self.auth)
        } else {
            (&AUTHORIZATION, &self.auth)
        }
    }

    async fn call(
        &self,
        method: Method,
        path: &str,
        body: Option<&Value>,
    ) -> Result<Response, RedfishError> {
        self.bmc
            .request(method, path, Some(self.auth_header()), body)
            .await
    }

    pub async fn get(&self, path: &str) -> Result<Value, RedfishError> {
        let r = self.call(Method::GET, path, None).await?;
        r.json().ok_or_else(|| RedfishError::Schema {
            path: path.to_owned(),
            what: "answer is not JSON".into(),
        })
    }

    async fn post(&self, path: &str, body: &Value) -> Result<Response, RedfishError> {
        self.call(Method::POST, path, Some(body)).await
    }

    async fn patch(&self, path: &str, body: &Value) -> Result<Response, RedfishError> {
        self.call(Method::PATCH, path, Some(body)).await
    }
}

/// The first message of a Redfish error body (`error.@Message.ExtendedInfo`
/// or `error.message`).
fn error_message(r: &Response) -> Option<String> {
    let v = r.json()?;
    let e = &v["error"];
    e["@Message.ExtendedInfo"][0]["Message"]
        .as_str()
        .or_else(|| e["message"].as_str())
        .map(|m| m.chars().take(300).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Arbitrary JSON in the shapes a BMC might send (or not).
    fn arb_json() -> impl proptest::strategy::Strategy<Value = Value> {
        use proptest::prelude::*;
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::from),
            any::<f64>().prop_map(|f| json!(f)),
            any::<i64>().prop_map(Value::from),
            prop_oneof![
                Just("Name"),
                Just("Critical"),
                Just("ReadingCelsius"),
                Just("x")
            ]
            .prop_map(Value::from),
        ];
        leaf.prop_recursive(4, 64, 6, |inner| {
            let key = prop_oneof![
                Just("Temperatures"),
                Just("Fans"),
                Just("PowerControl"),
                Just("PowerSupplies"),
                Just("Voltages"),
                Just("Name"),
                Just("ReadingCelsius"),
                Just("Reading"),
                Just("PowerConsumedWatts"),
                Just("LastPowerOutputWatts"),
                Just("ReadingVolts"),
                Just("UpperThresholdCritical"),
                Just("Status"),
                Just("Health"),
            ];
            prop_oneof![
                proptest::collection::vec(inner.clone(), 0..4).prop_map(Value::from),
                proptest::collection::btree_map(key.prop_map(String::from), inner, 0..5)
                    .prop_map(|m| Value::Object(m.into_iter().collect())),
            ]
        })
    }

    proptest::proptest! {
        /// Whatever a BMC sends: readings are finite numbers, and the
        /// refusal decision never panics.
        #[test]
        fn sensor_documents_of_any_shape_parse_to_finite_readings(v in arb_json()) {
            let (temperatures, fans) = parse_thermal(&v);
            let r = Readings { health: String::new(), temperatures, fans, power: parse_power(&v) };
            proptest::prop_assert!(r.temperatures.iter().chain(&r.fans).chain(&r.power).all(|x| x.value.is_finite()));
            let _ = r.refusal();
        }
    }

    #[test]
    fn thermal_and_power_readings_parse_and_a_critical_one_refuses() {
        // As DSP0266's Thermal and Power schemas lay them out (a chassis
        // with one CPU sensor, a fan, two supplies and a 12 V rail).
        let thermal = json!({
            "Temperatures": [
                {"MemberId": "0", "Name": "CPU1 Temp", "ReadingCelsius": 62,
                 "UpperThresholdCritical": 90, "Status": {"Health": "OK"}},
                {"MemberId": "1", "Name": "Inlet", "ReadingCelsius": null},
            ],
            "Fans": [{"MemberId": "0", "Name": "Fan1", "Reading": 6200, "ReadingUnits": "RPM",
                      "Status": {"Health": "Warning"}}],
        });
        let power = json!({
            "PowerControl": [{"MemberId": "0", "Name": "System Power Control", "PowerConsumedWatts": 344}],
            "PowerSupplies": [
                {"MemberId": "0", "Name": "PSU1", "LastPowerOutputWatts": 172, "Status": {"Health": "OK"}},
                {"MemberId": "1", "Name": "PSU2", "LastPowerOutputWatts": "n/a"},
            ],
            "Voltages": [{"MemberId": "0", "Name": "VRM1 12V", "ReadingVolts": 12.1,
                          "UpperThresholdCritical": 13.2}],
        });
        let (temps, fans) = parse_thermal(&thermal);
        assert_eq!(temps.len(), 1, "a null reading is left out");
        assert_eq!((temps[0].value, temps[0].unit), (62.0, "Cel"));
        assert_eq!(temps[0].critical_above, Some(90.0));
        assert_eq!(
            (fans[0].value, fans[0].health.as_str()),
            (6200.0, "Warning")
        );
        let p = parse_power(&power);
        let names: Vec<&str> = p.iter().map(|r| r.name.as_str()).collect();
        assert_eq!(names, ["System Power Control", "PSU1", "VRM1 12V"]);
        assert_eq!((p[2].value, p[2].unit), (12.1, "V"));
        let mut r = Readings {
            health: "OK".into(),
            temperatures: temps,
            fans,
            power: p,
        };
        assert_eq!(r.refusal(), None, "a Warning fan does not refuse");
        r.temperatures[0].value = 91.0;
        assert!(r.refusal().unwrap().contains("CPU1 Temp reads 91"), "{r:?}");
        r.temperatures[0].value = 60.0;
        r.power[1].health = "Critical".into();
        assert!(r.refusal().unwrap().contains("PSU1"));
        r.power[1].health = "OK".into();
        r.health = "Critical".into();
        assert_eq!(r.refusal().as_deref(), Some("Health Critical"));
        // Hostile documents: wrong types everywhere parse to nothing.
        let (t, f) = parse_thermal(&json!({"Temperatures": {"x": 1}, "Fans": "many"}));
        assert!(t.is_empty() && f.is_empty());
        assert!(parse_power(&json!([1, 2, 3])).is_empty());
    }

    fn bmc(url: &str) -> Redfish {
        Redfish::new(&RedfishConfig {
            url: url.into(),
            username: "u".into(),
            password: Secret::inline("p"),
            auth: AuthMode::Basic,
            ca_file: None,
            timeout: Duration::from_secs(1),
            retries: 0,
            settle_timeout: Duration::from_secs(1),
            poll_interval: Duration::from_millis(10),
        })
        .unwrap()
    }

    /// Answers each connection with the next reply; counts requests.
    async fn bmc_replying(
        replies: Vec<&'static str>,
    ) -> (String, std::sync::Arc<std::sync::atomic::AtomicUsize>) {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", l.local_addr().unwrap());
        let n = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let seen = n.clone();
        tokio::spawn(async move {
            for reply in replies {
                let (mut s, _) = l.accept().await.unwrap();
                let mut buf = [0u8; 2048];
                let _ = s.read(&mut buf).await;
                seen.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                let _ = s.write_all(reply.as_bytes()).await;
                let _ = s.shutdown().await;
            }
        });
        (url, n)
    }

    const UNAVAILABLE: &str = "HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\n\r\n";
    const OK: &str = "HTTP/1.1 200 OK\r\nContent-Length: 12\r\n\r\n{\"Id\":\"sys\"}";
    const DENIED: &str = "HTTP/1.1 401 Unauthorized\r\nContent-Length: 0\r\n\r\n";

    #[tokio::test]
    async fn server_errors_are_retried_with_backoff_and_client_errors_are_not() {
        let (url, n) = bmc_replying(vec![UNAVAILABLE, UNAVAILABLE, OK]).await;
        let mut b = bmc(&url);
        b.retries = 2;
        let c = b.open().await.unwrap();
        let t = Instant::now();
        assert_eq!(c.get("/redfish/v1/Systems/sys").await.unwrap()["Id"], "sys");
        assert_eq!(n.load(std::sync::atomic::Ordering::SeqCst), 3);
        // 250 ms, then 500 ms.
        assert!(t.elapsed() >= BACKOFF * 3, "{:?}", t.elapsed());

        let (url, n) = bmc_replying(vec![DENIED, OK]).await;
        let mut b = bmc(&url);
        b.retries = 2;
        let c = b.open().await.unwrap();
        let e = c.get("/redfish/v1/Systems/sys").await.unwrap_err();
        assert!(
            matches!(e, RedfishError::Status { status, .. } if status == StatusCode::UNAUTHORIZED)
        );
        assert_eq!(n.load(std::sync::atomic::Ordering::SeqCst), 1);

        // Retries run out: the last answer is the error.
        let (url, _) = bmc_replying(vec![UNAVAILABLE, UNAVAILABLE]).await;
        let mut b = bmc(&url);
        b.retries = 1;
        let c = b.open().await.unwrap();
        let e = c.get("/x").await.unwrap_err();
        assert!(
            matches!(e, RedfishError::Status { status, .. } if status == StatusCode::SERVICE_UNAVAILABLE)
        );
    }

    #[test]
    fn session_locations_become_paths() {
        let b = bmc("https://bmc.example:8443/");
        assert_eq!(
            b.path_of("https://bmc.example:8443/redfish/v1/SessionService/Sessions/7"),
            "/redfish/v1/SessionService/Sessions/7"
        );
        assert_eq!(
            b.path_of("/redfish/v1/SessionService/Sessions/7"),
            "/redfish/v1/SessionService/Sessions/7"
        );
        assert_eq!(
            b.path_of("https://10.0.0.1/redfish/v1/SessionService/Sessions/8"),
            "/redfish/v1/SessionService/Sessions/8"
        );
    }

    #[test]
    fn error_bodies_give_their_message() {
        let r = Response {
            status: StatusCode::BAD_REQUEST,
            headers: http::HeaderMap::new(),
            body: bytes::Bytes::from_static(
                br#"{"error":{"code":"Base.1.0.GeneralError","message":"general","@Message.ExtendedInfo":[{"Message":"Cannot download virtual media"}]}}"#,
            ),
        };
        assert_eq!(
            error_message(&r).as_deref(),
            Some("Cannot download virtual media")
        );
        let r = Response {
            body: bytes::Bytes::from_static(b"<html>oops</html>"),
            ..r
        };
        assert_eq!(error_message(&r), None);
    }

    #[test]
    fn systems_match_by_id_name_or_uuid() {
        let v = json!({"@odata.id": "/redfish/v1/Systems/abc", "Id": "abc", "Name": "spare-01",
                       "UUID": "u-1", "PowerState": "Off", "Status": {"Health": "OK"}});
        let s = System::from_json("/x", &v);
        assert!(s.matches("abc") && s.matches("spare-01") && s.matches("u-1"));
        assert!(!s.matches("spare-02"));
        assert_eq!(s.path, "/redfish/v1/Systems/abc");
        assert_eq!(s.health, "OK");
    }

    #[test]
    fn config_defaults_and_unknown_fields() {
        let c: RedfishConfig =
            toml::from_str("url = \"https://b\"\nusername = \"a\"\npassword = \"p\"").unwrap();
        assert_eq!(c.auth, AuthMode::Basic);
        assert_eq!(c.retries, 3);
        assert_eq!(c.timeout, Duration::from_secs(10));
        assert!(toml::from_str::<RedfishConfig>(
            "url = \"https://b\"\nusername = \"a\"\npassword = \"p\"\ninsecure = true"
        )
        .is_err());
    }
}
