//! `umbra.fleet.v1.Fleet`: the admin API behind `umbractl`.

use crate::ingest::Ingest;
use crate::model::{Sample, SeriesMeta};
use crate::risk::{Board, WINDOWS};
use crate::store::{Resolution, Severity, Store, StoreError};
use proto::fleet::v1 as pb;
use std::pin::Pin;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use tokio_stream::{wrappers::BroadcastStream, Stream, StreamExt};
use tonic::{Request, Response, Status};

#[derive(Debug, Clone)]
pub struct FleetService {
    pub ingest: Arc<Ingest>,
    pub risks: Arc<Board>,
    pub shadows: Arc<crate::shadow::runtime::Shadows>,
    pub shadow_settings: crate::shadow::runtime::Settings,
    pub pagers: Arc<crate::paging::Pagers>,
    /// The risk loop's interval: `Replay`'s default step.
    pub risk_interval: std::time::Duration,
    pub learner: Arc<crate::learn::Learner>,
    pub learn_settings: crate::learn::Settings,
    pub readiness: crate::readiness::Weights,
}

fn store_status(e: StoreError) -> Status {
    Status::internal(e.to_string())
}

async fn with_store<T: Send + 'static>(
    ingest: &Arc<Ingest>,
    f: impl FnOnce(&Store) -> Result<T, StoreError> + Send + 'static,
) -> Result<T, Status> {
    let store = ingest.store.clone();
    tokio::task::spawn_blocking(move || f(&store))
        .await
        .map_err(|e| Status::internal(e.to_string()))?
        .map_err(store_status)
}

fn info(m: &SeriesMeta) -> pb::SeriesInfo {
    pb::SeriesInfo {
        series_key: m.key,
        host_id: m.id.host.clone(),
        metric: m.id.metric.clone(),
        component: m.id.component.clone(),
        unit: m.unit.clone(),
        labels: m.id.labels.clone().into_iter().collect(),
    }
}

fn sample(s: &Sample) -> pb::Sample {
    pb::Sample {
        timestamp_ms: s.ts_ms,
        value: s.value,
        quality: u32::from(s.quality as u8),
    }
}

/// Series of `host` whose metric contains `metric` (all when empty).
fn matching(store: &Store, host: &str, metric: &str) -> Result<Vec<SeriesMeta>, StoreError> {
    let host = (!host.is_empty()).then_some(host);
    Ok(store
        .series(host)?
        .into_iter()
        .filter(|m| metric.is_empty() || m.id.metric.contains(metric))
        .collect())
}

#[tonic::async_trait]
impl pb::fleet_server::Fleet for FleetService {
    async fn list_hosts(
        &self,
        _: Request<pb::ListHostsRequest>,
    ) -> Result<Response<pb::ListHostsResponse>, Status> {
        let records = with_store(&self.ingest, |s| s.hosts()).await?;
        let hosts = records
            .into_iter()
            .map(|r| pb::Host {
                connected: self.ingest.is_connected(&r.host_id),
                host_id: r.host_id,
                hwprofile_id: r.hwprofile_id,
                agent_version: r.agent_version,
                site: r.failure_domain.site,
                rack: r.failure_domain.rack,
                pdu: r.failure_domain.pdu,
                tor: r.failure_domain.tor,
                last_seen_unix_ms: r.last_seen_ms,
                sample_rate: r.sample_rate,
                series_count: r.series_count,
                backlog_batches: r.stats.backlog_batches,
                backlog_samples: r.stats.backlog_samples,
                produced_samples: r.stats.produced_samples,
                dropped_samples: r.stats.dropped_samples,
                stored_samples: r.stored_samples,
                components: r.components.len() as u64,
                rejected_samples: r.stats.rejected_samples,
                in_doubt_samples: r.stats.in_doubt_samples,
            })
            .collect();
        Ok(Response::new(pb::ListHostsResponse { hosts }))
    }

    async fn list_series(
        &self,
        req: Request<pb::ListSeriesRequest>,
    ) -> Result<Response<pb::ListSeriesResponse>, Status> {
        let r = req.into_inner();
        let metas = with_store(&self.ingest, move |s| matching(s, &r.host_id, &r.metric)).await?;
        Ok(Response::new(pb::ListSeriesResponse {
            series: metas.iter().map(info).collect(),
        }))
    }

    async fn query_range(
        &self,
        req: Request<pb::QueryRangeRequest>,
    ) -> Result<Response<pb::QueryRangeResponse>, Status> {
        let r = req.into_inner();
        let end = if r.end_ms == 0 { i64::MAX } else { r.end_ms };
        let series = with_store(&self.ingest, move |s| {
            let mut out = Vec::new();
            for m in matching(s, &r.host_id, &r.metric)? {
                let mut samples = s.range(m.key, r.start_ms, end)?;
                if r.limit > 0 && samples.len() > r.limit as usize {
                    samples.drain(..samples.len() - r.limit as usize);
                }
                out.push(pb::SeriesData {
                    series: Some(info(&m)),
                    samples: samples.iter().map(sample).collect(),
                });
            }
            Ok(out)
        })
        .await?;
        Ok(Response::new(pb::QueryRangeResponse { series }))
    }

    async fn query_last(
        &self,
        req: Request<pb::QueryLastRequest>,
    ) -> Result<Response<pb::QueryLastResponse>, Status> {
        let r = req.into_inner();
        let series = with_store(&self.ingest, move |s| {
            let mut out = Vec::new();
            for m in matching(s, &r.host_id, &r.metric)? {
                let last = s.last(m.key)?;
                out.push(pb::SeriesData {
                    series: Some(info(&m)),
                    samples: last.iter().map(sample).collect(),
                });
            }
            Ok(out)
        })
        .await?;
        Ok(Response::new(pb::QueryLastResponse { series }))
    }

    async fn query_rollup(
        &self,
        req: Request<pb::QueryRollupRequest>,
    ) -> Result<Response<pb::QueryRollupResponse>, Status> {
        let r = req.into_inner();
        let res = Resolution::from_millis(r.resolution_ms)
            .ok_or_else(|| Status::invalid_argument("resolution_ms must be 60000 or 3600000"))?;
        let end = if r.end_ms == 0 {
            crate::now_ms()
        } else {
            r.end_ms
        };
        let series = with_store(&self.ingest, move |s| {
            let mut out = Vec::new();
            for m in matching(s, &r.host_id, &r.metric)? {
                let buckets = s.rollup(m.key, res, r.start_ms, end)?;
                out.push(pb::RollupSeries {
                    series: Some(info(&m)),
                    buckets: buckets
                        .iter()
                        .map(|b| pb::RollupBucket {
                            start_ms: b.start_ms,
                            min: b.min,
                            max: b.max,
                            mean: b.mean(),
                            count: b.count,
                        })
                        .collect(),
                });
            }
            Ok(out)
        })
        .await?;
        Ok(Response::new(pb::QueryRollupResponse { series }))
    }

    async fn store_stats(
        &self,
        _: Request<pb::StoreStatsRequest>,
    ) -> Result<Response<pb::StoreStatsResponse>, Status> {
        let (series, disk_bytes) = with_store(&self.ingest, |s| {
            Ok((s.series(None)?.len() as u64, s.disk_bytes()?))
        })
        .await?;
        let c = &self.ingest.counters;
        Ok(Response::new(pb::StoreStatsResponse {
            series,
            samples_ingested: c.samples.load(Ordering::Relaxed),
            batches_ingested: c.batches.load(Ordering::Relaxed),
            duplicate_batches: c.duplicates.load(Ordering::Relaxed),
            rejected_batches: c.rejected.load(Ordering::Relaxed),
            disk_bytes,
        }))
    }

    async fn list_hardware_events(
        &self,
        req: Request<pb::ListHardwareEventsRequest>,
    ) -> Result<Response<pb::ListHardwareEventsResponse>, Status> {
        let r = req.into_inner();
        let min = match r.min_severity.as_str() {
            "" | "info" => Severity::Info,
            "warning" => Severity::Warning,
            "critical" => Severity::Critical,
            other => {
                return Err(Status::invalid_argument(format!(
                    "min_severity {other:?} is not info, warning or critical"
                )))
            }
        };
        let limit = match r.limit {
            0 => 1000,
            n => usize::try_from(n).unwrap_or(usize::MAX).min(100_000),
        };
        let host = (!r.host_id.is_empty()).then_some(r.host_id);
        let events = with_store(&self.ingest, move |s| {
            s.events(host.as_deref(), r.since_ms, min, limit)
        })
        .await?;
        Ok(Response::new(pb::ListHardwareEventsResponse {
            events: events
                .into_iter()
                .map(|e| pb::HardwareEvent {
                    host_id: e.host,
                    time_ms: e.time_ms,
                    observed_ms: e.observed_ms,
                    device_time: e.device_time_ms.is_some(),
                    source: e.source,
                    component: e.component,
                    severity: e.severity.as_str().to_owned(),
                    description: e.description,
                    attributes: e.attributes.into_iter().collect(),
                })
                .collect(),
        }))
    }

    async fn list_components(
        &self,
        req: Request<pb::ListComponentsRequest>,
    ) -> Result<Response<pb::ListComponentsResponse>, Status> {
        let host = req.into_inner().host_id;
        let record = with_store(&self.ingest, {
            let host = host.clone();
            move |s| s.host(&host)
        })
        .await?
        .ok_or_else(|| Status::not_found(format!("no host {host:?}")))?;
        Ok(Response::new(pb::ListComponentsResponse {
            components: record
                .components
                .into_iter()
                .map(|c| pb::Component {
                    id: c.id,
                    kind: c.kind,
                    model: c.model,
                    serial: c.serial,
                    firmware: c.firmware,
                    installed_unix_s: c.installed_unix_s,
                    power_on_hours: c.power_on_hours,
                })
                .collect(),
        }))
    }

    async fn put_model(
        &self,
        req: Request<pb::PutModelRequest>,
    ) -> Result<Response<pb::PutModelResponse>, Status> {
        let r = req.into_inner();
        // Only kinds inference knows, and only bytes that load as one.
        if r.kind != crate::risk::DISK_MODEL {
            return Err(Status::invalid_argument(format!(
                "unknown model kind {:?} (known: {})",
                r.kind,
                crate::risk::DISK_MODEL
            )));
        }
        predict::failure::FailureModel::from_bytes(&r.model)
            .map_err(|e| Status::invalid_argument(format!("not a loadable {}: {e}", r.kind)))?;
        let evaluation: serde_json::Value = if r.evaluation_json.is_empty() {
            serde_json::Value::Null
        } else {
            serde_json::from_str(&r.evaluation_json)
                .map_err(|e| Status::invalid_argument(format!("evaluation_json: {e}")))?
        };
        let record = with_store(&self.ingest, move |s| {
            let rec = s.put_model(
                &r.kind,
                &r.model,
                &r.trained_on,
                evaluation,
                crate::now_ms(),
            )?;
            if r.activate {
                s.activate_model(&r.kind, rec.version)?;
            }
            Ok(rec)
        })
        .await?;
        tracing::info!(kind = %record.kind, version = record.version, bytes = record.bytes, "model stored");
        Ok(Response::new(pb::PutModelResponse {
            version: record.version,
        }))
    }

    async fn list_models(
        &self,
        req: Request<pb::ListModelsRequest>,
    ) -> Result<Response<pb::ListModelsResponse>, Status> {
        let kind = req.into_inner().kind;
        let (records, active) = with_store(&self.ingest, move |s| {
            Ok((s.models(&kind)?, s.active_model(&kind)?))
        })
        .await?;
        Ok(Response::new(pb::ListModelsResponse {
            models: records
                .into_iter()
                .map(|m| pb::ModelVersion {
                    active: active == Some(m.version),
                    evaluation_json: m.evaluation.to_string(),
                    kind: m.kind,
                    version: m.version,
                    created_unix_ms: m.created_ms,
                    trained_on: m.trained_on,
                    bytes: m.bytes,
                })
                .collect(),
        }))
    }

    async fn list_risks(
        &self,
        req: Request<pb::ListRisksRequest>,
    ) -> Result<Response<pb::ListRisksResponse>, Status> {
        let host = req.into_inner().host_id;
        let host = (!host.is_empty()).then_some(host.as_str());
        Ok(Response::new(pb::ListRisksResponse {
            risks: self
                .risks
                .ranked(host)
                .into_iter()
                .map(|r| pb::Risk {
                    host_id: r.host,
                    component: r.component,
                    windows: WINDOWS
                        .iter()
                        .zip(r.probability)
                        .map(|(w, p)| pb::WindowRisk {
                            window: (*w).to_owned(),
                            probability: p,
                        })
                        .collect(),
                    explanation: r.explanation,
                    model_kind: crate::risk::DISK_MODEL.to_owned(),
                    model_version: r.model_version,
                    evaluated_unix_ms: r.evaluated_ms,
                    history_days: r.history_days,
                    holdout: r.holdout,
                })
                .collect(),
            last_run_unix_ms: self.risks.snapshot().last_run_ms,
        }))
    }

    async fn list_shadows(
        &self,
        _: Request<pb::ListShadowsRequest>,
    ) -> Result<Response<pb::ListShadowsResponse>, Status> {
        let state = self.shadows.snapshot();
        Ok(Response::new(pb::ListShadowsResponse {
            shadows: state
                .lifecycles
                .iter()
                .map(|(target, lc)| pb::Shadow {
                    target: target.clone(),
                    phase: lc.phase.name().to_owned(),
                    since_unix_ms: lc.since,
                    p7d: lc.p7d,
                    verdict: state.verdicts.get(target).cloned().unwrap_or_default(),
                    pending: lc
                        .pending
                        .map(|(a, _)| format!("{a:?}"))
                        .unwrap_or_default(),
                })
                .collect(),
            mode: self.shadows.mode_name().to_owned(),
        }))
    }

    async fn control_shadow(
        &self,
        req: Request<pb::ControlShadowRequest>,
    ) -> Result<Response<pb::ControlShadowResponse>, Status> {
        use crate::shadow::runtime::{control, Control, ControlError};
        let r = req.into_inner();
        let decision: Control = r
            .action
            .parse()
            .map_err(|e: ControlError| Status::invalid_argument(e.to_string()))?;
        if r.operator.trim().is_empty() {
            return Err(Status::invalid_argument(
                "operator is required (it goes into the audit log)",
            ));
        }
        let (store, shadows, settings) = (
            self.ingest.store.clone(),
            self.shadows.clone(),
            self.shadow_settings.clone(),
        );
        let outcome = tokio::task::spawn_blocking(move || {
            control(
                &store,
                &shadows,
                &settings,
                &r.target,
                decision,
                &r.operator,
                &r.reason,
                crate::now_ms(),
            )
        })
        .await
        .map_err(|e| Status::internal(e.to_string()))?;
        let (lc, notices) = outcome.map_err(|e| match e {
            ControlError::UnknownAction(_) => Status::invalid_argument(e.to_string()),
            ControlError::NoLifecycle(_) => Status::not_found(e.to_string()),
            ControlError::NotApplicable { .. } | ControlError::Off => {
                Status::failed_precondition(e.to_string())
            }
            ControlError::Store(e) => store_status(e),
        })?;
        if !notices.is_empty() {
            // Paging retries must not hold the operator's command.
            let (store, shadows, pagers) = (
                self.ingest.store.clone(),
                self.shadows.clone(),
                self.pagers.clone(),
            );
            tokio::spawn(async move {
                let out = crate::shadow::runtime::Output {
                    notices,
                    refresh: vec![],
                };
                crate::risk::deliver(&store, &shadows, &pagers, out).await;
            });
        }
        Ok(Response::new(pb::ControlShadowResponse {
            phase: lc.phase.name().to_owned(),
            paused: lc.paused,
        }))
    }

    async fn replay(
        &self,
        req: Request<pb::ReplayRequest>,
    ) -> Result<Response<pb::ReplayResponse>, Status> {
        use crate::shadow::replay::{replay, ReplayError};
        let r = req.into_inner();
        let until = if r.until_ms == 0 {
            crate::now_ms()
        } else {
            r.until_ms
        };
        let step = if r.step_ms == 0 {
            i64::try_from(self.risk_interval.as_millis()).unwrap_or(i64::MAX)
        } else {
            r.step_ms
        };
        let (store, settings) = (self.ingest.store.clone(), self.shadow_settings.clone());
        let apply_threshold = self.learn_settings.apply_threshold;
        let outcome = tokio::task::spawn_blocking(move || {
            let version = store
                .active_model(crate::risk::DISK_MODEL)
                .map_err(|e| Status::internal(e.to_string()))?
                .ok_or_else(|| {
                    Status::failed_precondition(
                        "no active failure/disk model to replay with (umbractl train)",
                    )
                })?;
            let tuned = if apply_threshold {
                crate::learn::tuned_enter(&store, version).map_err(store_status)?
            } else {
                None
            };
            let settings = crate::risk::with_threshold(&settings, tuned);
            let model =
                crate::risk::load(&store, version).map_err(|e| Status::internal(e.to_string()))?;
            let events = replay(&store, &model, version, &settings, r.since_ms, until, step)
                .map_err(|e| match e {
                    ReplayError::TooManySteps { .. } | ReplayError::Interval => {
                        Status::invalid_argument(e.to_string())
                    }
                    ReplayError::Risk(e) => Status::internal(e.to_string()),
                })?;
            Ok::<_, Status>((version, events))
        })
        .await
        .map_err(|e| Status::internal(e.to_string()))??;
        Ok(Response::new(pb::ReplayResponse {
            records: outcome
                .1
                .into_iter()
                .map(|e| pb::AuditRecord {
                    time_ms: e.time_ms,
                    json: e.record.to_string(),
                })
                .collect(),
            model_version: outcome.0,
        }))
    }

    async fn list_audit(
        &self,
        req: Request<pb::ListAuditRequest>,
    ) -> Result<Response<pb::ListAuditResponse>, Status> {
        let r = req.into_inner();
        let limit = if r.limit == 0 {
            1000
        } else {
            r.limit.min(100_000)
        } as usize;
        let records = with_store(&self.ingest, move |s| s.audit(r.since_ms, limit)).await?;
        Ok(Response::new(pb::ListAuditResponse {
            records: records
                .into_iter()
                .map(|(time_ms, v)| pb::AuditRecord {
                    time_ms,
                    json: v.to_string(),
                })
                .collect(),
        }))
    }

    async fn record_failure(
        &self,
        req: Request<pb::RecordFailureRequest>,
    ) -> Result<Response<pb::RecordFailureResponse>, Status> {
        let r = req.into_inner();
        if r.host_id.is_empty() || r.component.is_empty() {
            return Err(Status::invalid_argument(
                "host_id and component are required",
            ));
        }
        if r.host_id.contains('\0') || r.component.contains('\0') {
            return Err(Status::invalid_argument("NUL in host_id or component"));
        }
        let now = crate::now_ms();
        if r.at_unix_ms > now + 60_000 {
            return Err(Status::invalid_argument("at_unix_ms is in the future"));
        }
        let label = crate::learn::FailureLabel {
            at_ms: if r.at_unix_ms == 0 { now } else { r.at_unix_ms },
            source: "operator".into(),
            note: r.note,
            operator: r.operator,
        };
        let value = serde_json::to_value(&label).expect("serialisable");
        let audit = serde_json::json!({
            "target": r.host_id, "event": "failure_recorded", "component": r.component,
            "at_ms": label.at_ms, "operator": label.operator, "note": label.note,
        });
        with_store(&self.ingest, move |s| {
            s.put_failure(&r.host_id, &r.component, &value)?;
            s.append_audit(now, &audit)
        })
        .await?;
        Ok(Response::new(pb::RecordFailureResponse {}))
    }

    async fn retrain(
        &self,
        req: Request<pb::RetrainRequest>,
    ) -> Result<Response<pb::RetrainResponse>, Status> {
        use crate::learn::LearnError;
        let (store, learner, settings) = (
            self.ingest.store.clone(),
            self.learner.clone(),
            self.learn_settings.clone(),
        );
        if req.into_inner().demand {
            let trained = tokio::task::spawn_blocking(move || {
                learner.retrain_demand(&store, &settings, crate::now_ms())
            })
            .await
            .map_err(|e| Status::internal(e.to_string()))?
            .map_err(|e| match e {
                LearnError::Busy => Status::unavailable(e.to_string()),
                _ => Status::internal(e.to_string()),
            })?;
            let evaluation: serde_json::Map<String, serde_json::Value> = trained
                .iter()
                .map(|t| (t.resource.to_owned(), t.evaluation.clone()))
                .collect();
            return Ok(Response::new(pb::RetrainResponse {
                version: 0,
                activated: trained.iter().any(|t| t.activated),
                activation: String::new(),
                evaluation_json: serde_json::Value::Object(evaluation).to_string(),
                report: crate::demand::report(&trained),
            }));
        }
        let outcome = tokio::task::spawn_blocking(move || {
            learner.retrain(&store, &settings, crate::now_ms(), |_, _| {})
        })
        .await
        .map_err(|e| Status::internal(e.to_string()))?
        .map_err(|e| match e {
            LearnError::TooFewFailures { .. } => Status::failed_precondition(e.to_string()),
            LearnError::Busy => Status::unavailable(e.to_string()),
            _ => Status::internal(e.to_string()),
        })?;
        Ok(Response::new(pb::RetrainResponse {
            version: outcome.version,
            activated: outcome.activated,
            activation: outcome.activation,
            evaluation_json: outcome.evaluation.to_string(),
            report: outcome.report,
        }))
    }

    async fn list_readiness(
        &self,
        _: Request<pb::ListReadinessRequest>,
    ) -> Result<Response<pb::ListReadinessResponse>, Status> {
        let (board, weights) = (self.risks.clone(), self.readiness);
        let hosts = with_store(&self.ingest, move |s| {
            crate::readiness::fleet(s, &board, &weights)
        })
        .await?;
        Ok(Response::new(pb::ListReadinessResponse {
            hosts: hosts
                .into_iter()
                .map(|(host_id, r)| pb::HostReadiness {
                    host_id,
                    score: r.score,
                    p7d: r.inputs.p7d.unwrap_or(f64::NAN),
                    utilisation: r.inputs.utilisation.unwrap_or(f64::NAN),
                    failure_rate: r.inputs.failure_rate.unwrap_or(f64::NAN),
                    explanation: r.explanation,
                })
                .collect(),
        }))
    }

    async fn forecast_demand(
        &self,
        req: Request<pb::ForecastDemandRequest>,
    ) -> Result<Response<pb::ForecastDemandResponse>, Status> {
        use crate::demand::DemandError;
        let host = req.into_inner().host_id;
        let store = self.ingest.store.clone();
        let forecasts = tokio::task::spawn_blocking(move || {
            crate::demand::forecast(&store, &host, crate::now_ms())
        })
        .await
        .map_err(|e| Status::internal(e.to_string()))?
        .map_err(|e| match e {
            DemandError::UnknownHost(_) => Status::not_found(e.to_string()),
            _ => Status::internal(e.to_string()),
        })?;
        Ok(Response::new(pb::ForecastDemandResponse {
            resources: forecasts
                .into_iter()
                .map(|f| pb::ResourceForecast {
                    resource: f.resource.to_owned(),
                    unit: f.unit.to_owned(),
                    last: f.last.unwrap_or(f64::NAN),
                    points: f
                        .points
                        .iter()
                        .map(|p| pb::DemandPoint {
                            at_unix_ms: p.at_ms,
                            mean: p.mean,
                            lower: p.lower,
                            upper: p.upper,
                        })
                        .collect(),
                    model_version: f.model_version,
                    method: f.method.to_owned(),
                    coverage: f.coverage.unwrap_or(f64::NAN),
                    missing: f.missing.unwrap_or_default(),
                })
                .collect(),
        }))
    }

    type WatchEventsStream = Pin<Box<dyn Stream<Item = Result<pb::FleetEvent, Status>> + Send>>;

    async fn watch_events(
        &self,
        _: Request<pb::WatchEventsRequest>,
    ) -> Result<Response<Self::WatchEventsStream>, Status> {
        let stream = BroadcastStream::new(self.ingest.bus.subscribe()).map(|item| match item {
            Ok(ev) => Ok(pb::FleetEvent {
                timestamp_ms: ev.ts_ms,
                host_id: ev.host,
                kind: ev.kind.as_str().to_owned(),
                detail: ev.detail,
            }),
            Err(lagged) => Ok(pb::FleetEvent {
                timestamp_ms: crate::now_ms(),
                host_id: String::new(),
                kind: "lagged".to_owned(),
                detail: lagged.to_string(),
            }),
        });
        Ok(Response::new(Box::pin(stream)))
    }
}
