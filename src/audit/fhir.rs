//! Export of the trail as FHIR R4 `AuditEvent`s, for auditors and for a patient's accounting
//! of disclosures.
//!
//! The shapes follow IHE Basic Audit Log Patterns (BALP) where it has a pattern, without
//! claiming its profiles (which need a patient entity we do not keep):
//!
//! - Link creation (attempt, created, refused) is BALP's RESTful *create*: `type` =
//!   `audit-event-type#rest`, `subtype` = `restful-interaction#create`, `action` = `C`, with the
//!   client as requestor (`DCM#110153` Source Role ID) and the gateway as server
//!   (`DCM#110152` Destination Role ID).
//! - Revocation is a RESTful *delete* (`action` = `D`): the link stops resolving for good,
//!   which is what deletion means to its recipients; the trail keeps its history.
//! - Manifest requests and file or direct fetches are disclosures, BALP's "Privacy Disclosure
//!   at the Source": `type` = `DCM#110106` Export, `subtype` = ISO 21089 `disclose`, `action` =
//!   `R`, the gateway as source agent, and the declared recipient as an agent typed
//!   `v3-ParticipationType#IRCP` (information recipient) and marked requestor, since the
//!   recipient is who asked. Its `who.display` is the `recipient` text the viewer sent.
//! - A `recovered` record is a `DCM#110113` Security Alert, subtype `DCM#110134` Audit
//!   Recording Started (`action` = `E`): recording resumed after a crash cut a write short,
//!   which an auditor must see.
//! - `checkpoint` records are left out: they are integrity metadata written by the sink, not
//!   events anyone performed, and `verify_file` is what checks them.
//!
//! `outcome`: `0` for `ok`; `4` (minor failure, the HTTP 4xx kind) for refusals the client
//! caused (`refused`, `bad-passcode`, `inactive`, ... and the gateway's client error codes);
//! `8` (serious failure) for anything else; none for a creation attempt, whose outcome is not
//! known yet. The original outcome text is kept in `outcomeDesc`.
//!
//! Each resource id is a UUID v5 of chain and seq, so exporting twice gives the same ids and an
//! `AuditEvent` can be traced back to its signed record. Export does not check MACs (it takes
//! no key): run [`crate::audit::verify_file`] first.

use std::path::Path;

use serde_json::{Map, Value, json};
use uuid::Uuid;

use super::chain::{Record, now_utc};
use super::verify::read_lines;
use super::{AuditAction, AuditError};

const DCM: &str = "http://dicom.nema.org/resources/ontology/DCM";
const EVENT_TYPE: &str = "http://terminology.hl7.org/CodeSystem/audit-event-type";
const RESTFUL: &str = "http://hl7.org/fhir/restful-interaction";
const LIFECYCLE: &str = "http://terminology.hl7.org/CodeSystem/iso-21089-lifecycle";
const PARTICIPATION: &str = "http://terminology.hl7.org/CodeSystem/v3-ParticipationType";
const SOURCE_TYPE: &str = "http://terminology.hl7.org/CodeSystem/security-source-type";
const ENTITY_TYPE: &str = "http://terminology.hl7.org/CodeSystem/audit-entity-type";
const OBJECT_ROLE: &str = "http://terminology.hl7.org/CodeSystem/object-role";
const BALP_ENTITY_TYPE: &str = "https://profiles.ihe.net/ITI/BALP/CodeSystem/BasicAuditEntityType";

/// A FHIR R4 `Bundle` (type `collection`) with one `AuditEvent` per record of the file,
/// checkpoints excluded. A final line still being written is skipped; any other unreadable
/// line is an error.
pub fn export_fhir(path: &Path) -> Result<Value, AuditError> {
    let mut entries = Vec::new();
    let mut failure = None;
    read_lines(path, |number, line| {
        match line
            .map_err(str::to_owned)
            .and_then(Record::parse_unverified)
        {
            Ok((record, _mac)) => {
                if let Some(resource) = audit_event(&record) {
                    let id = resource["id"].as_str().unwrap_or_default().to_owned();
                    entries
                        .push(json!({ "fullUrl": format!("urn:uuid:{id}"), "resource": resource }));
                }
                true
            }
            Err(reason) => {
                failure = Some(AuditError::Corrupt {
                    location: format!("line {number}"),
                    reason,
                });
                false
            }
        }
    })?;
    if let Some(failure) = failure {
        return Err(failure);
    }
    Ok(json!({
        "resourceType": "Bundle",
        "type": "collection",
        "timestamp": now_utc(),
        "entry": entries,
    }))
}

/// The `AuditEvent` for one record, or `None` for a checkpoint.
pub(crate) fn audit_event(record: &Record) -> Option<Value> {
    let action = record.action;
    let gateway = format!("shl-gateway {}", record.chain);
    let mut event = Map::new();
    event.insert("resourceType".into(), json!("AuditEvent"));
    event.insert("id".into(), json!(event_id(&record.chain, record.seq)));

    let (kind, subtype, code, gateway_role) = match action {
        AuditAction::CreationAttempt | AuditAction::LinkCreated | AuditAction::CreationRefused => (
            coding(EVENT_TYPE, "rest", "Restful Operation"),
            coding(RESTFUL, "create", "create"),
            "C",
            coding(DCM, "110152", "Destination Role ID"),
        ),
        AuditAction::LinkRevoked => (
            coding(EVENT_TYPE, "rest", "Restful Operation"),
            coding(RESTFUL, "delete", "delete"),
            "D",
            coding(DCM, "110152", "Destination Role ID"),
        ),
        AuditAction::ManifestRequested | AuditAction::FileFetched | AuditAction::DirectFetched => (
            coding(DCM, "110106", "Export"),
            coding(LIFECYCLE, "disclose", "Disclose Record Lifecycle Event"),
            "R",
            coding(DCM, "110153", "Source Role ID"),
        ),
        AuditAction::Recovered => (
            coding(DCM, "110113", "Security Alert"),
            coding(DCM, "110134", "Audit Recording Started"),
            "E",
            coding(DCM, "110150", "Application"),
        ),
        AuditAction::Checkpoint => return None,
    };
    event.insert("type".into(), kind);
    event.insert("subtype".into(), json!([subtype]));
    event.insert("action".into(), json!(code));
    event.insert("recorded".into(), json!(record.time));
    if let Some(outcome) = outcome_code(action, &record.outcome) {
        event.insert("outcome".into(), json!(outcome));
    }
    let description = match &record.note {
        Some(note) => format!("{}: {note}", record.outcome),
        None => record.outcome.clone(),
    };
    event.insert("outcomeDesc".into(), json!(description));

    let mut agents = vec![json!({
        "type": { "coding": [gateway_role] },
        "who": { "display": gateway },
        "requestor": action == AuditAction::Recovered,
    })];
    let network = record
        .client_ip
        .as_ref()
        .map(|ip| json!({ "address": ip, "type": "2" }));
    if action.is_disclosure() {
        // The declared recipient is who asked; `actor`, when a handler knows one, identifies it.
        let mut who = Map::new();
        who.insert(
            "display".into(),
            json!(
                record
                    .recipient
                    .as_deref()
                    .unwrap_or("(no recipient declared)")
            ),
        );
        if let Some(actor) = &record.actor {
            who.insert("identifier".into(), json!({ "value": actor }));
        }
        let mut agent = Map::new();
        agent.insert(
            "type".into(),
            json!({ "coding": [coding(PARTICIPATION, "IRCP", "information recipient")] }),
        );
        agent.insert("who".into(), Value::Object(who));
        agent.insert("requestor".into(), json!(true));
        if let Some(network) = network {
            agent.insert("network".into(), network);
        }
        agents.push(Value::Object(agent));
    } else if record.actor.is_some() || network.is_some() {
        let mut agent = Map::new();
        agent.insert(
            "type".into(),
            json!({ "coding": [coding(DCM, "110153", "Source Role ID")] }),
        );
        if let Some(actor) = &record.actor {
            agent.insert("who".into(), json!({ "identifier": { "value": actor } }));
        }
        agent.insert("requestor".into(), json!(true));
        if let Some(network) = network {
            agent.insert("network".into(), network);
        }
        agents.push(Value::Object(agent));
    }
    event.insert("agent".into(), Value::Array(agents));

    event.insert(
        "source".into(),
        json!({
            "site": record.chain,
            "observer": { "display": format!("shl-gateway {}", record.chain) },
            "type": [coding(SOURCE_TYPE, "4", "Application Server")],
        }),
    );

    let mut entities = Vec::new();
    if let Some(entity) = link_entity(record) {
        entities.push(entity);
    }
    if let Some(request_id) = &record.request_id {
        entities.push(json!({
            "what": { "identifier": { "value": request_id } },
            "type": coding(BALP_ENTITY_TYPE, "XrequestId", "X-Request-Id"),
        }));
    }
    if !entities.is_empty() {
        event.insert("entity".into(), Value::Array(entities));
    }
    Some(Value::Object(event))
}

/// The link (and what it carries) as a system object, with the record's technical details.
fn link_entity(record: &Record) -> Option<Value> {
    let mut details = Vec::new();
    let mut detail = |name: &str, value: String| {
        details.push(json!({ "type": name, "valueString": value }));
    };
    if !record.resource_types.is_empty() {
        detail("resource-types", record.resource_types.join(","));
    }
    if let Some(mode) = &record.mode {
        detail("mode", mode.clone());
    }
    if let Some(status) = record.upstream_status {
        detail("upstream-status", status.to_string());
    }
    if let Some(latency) = record.upstream_latency_ms {
        detail("upstream-latency-ms", latency.to_string());
    }
    if let Some(remaining) = record.remaining_attempts {
        detail("remaining-attempts", remaining.to_string());
    }
    if let Some(user_agent) = &record.user_agent {
        detail("user-agent", user_agent.clone());
    }
    if record.link_id.is_none() && details.is_empty() {
        return None;
    }
    let mut entity = Map::new();
    if let Some(link_id) = &record.link_id {
        entity.insert(
            "what".into(),
            json!({ "identifier": { "value": link_id }, "display": "SMART Health Link" }),
        );
    }
    entity.insert("type".into(), coding(ENTITY_TYPE, "2", "System Object"));
    entity.insert("role".into(), coding(OBJECT_ROLE, "4", "Domain Resource"));
    if !details.is_empty() {
        entity.insert("detail".into(), Value::Array(details));
    }
    Some(Value::Object(entity))
}

fn coding(system: &str, code: &str, display: &str) -> Value {
    json!({ "system": system, "code": code, "display": display })
}

fn event_id(chain: &str, seq: u64) -> String {
    let namespace = Uuid::new_v5(&Uuid::NAMESPACE_URL, b"urn:shl-gateway:audit-event");
    Uuid::new_v5(&namespace, format!("{chain}\n{seq}").as_bytes()).to_string()
}

/// FHIR R4 `AuditEvent.outcome`: 0 success, 4 minor failure, 8 serious failure.
fn outcome_code(action: AuditAction, outcome: &str) -> Option<&'static str> {
    if action == AuditAction::CreationAttempt {
        return None;
    }
    if action == AuditAction::Recovered {
        return Some("4");
    }
    let normalized = outcome.to_ascii_lowercase().replace('_', "-");
    if normalized == "ok" {
        return Some("0");
    }
    const CLIENT_CAUSED: &[&str] = &[
        "refused",
        "bad-passcode",
        "inactive",
        "revoked",
        "expired",
        "not-found",
        "too-many-attempts",
        "forbidden",
        "unauthenticated",
        "bad-user-input",
        "graphql-parse-failed",
        "graphql-validation-failed",
        "operation-limit-exceeded",
        "not-supported-in-mode",
        "rate-limited",
        "csrf-error",
    ];
    if CLIENT_CAUSED.contains(&normalized.as_str()) {
        Some("4")
    } else {
        Some("8")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audit::AuditEvent;
    use crate::audit::chain::{ChainState, Sealer};
    use crate::crypto::AuditKey;

    fn sealed_record(event: AuditEvent) -> Record {
        let sealer = Sealer::new(&AuditKey::new([3; 32]), "gw-0".into()).expect("sealer");
        let line = sealer
            .seal(&mut ChainState::genesis(), event, None)
            .expect("seal")
            .line;
        Record::parse_unverified(&line).expect("parses").0
    }

    #[test]
    fn a_disclosure_names_its_recipient_and_link() {
        let record = sealed_record(AuditEvent {
            link_id: Some("L1".into()),
            recipient: Some("Dr. Ana Souza".into()),
            client_ip: Some("203.0.113.9".into()),
            resource_types: vec!["Patient".into(), "Immunization".into()],
            ..AuditEvent::new(AuditAction::FileFetched, "ok")
        });
        let event = audit_event(&record).expect("not a checkpoint");
        assert_eq!(event["type"]["code"], "110106");
        assert_eq!(event["subtype"][0]["code"], "disclose");
        assert_eq!(event["action"], "R");
        assert_eq!(event["outcome"], "0");
        assert_eq!(event["recorded"], json!(record.time));
        assert_eq!(event["source"]["observer"]["display"], "shl-gateway gw-0");
        let recipient = &event["agent"][1];
        assert_eq!(recipient["who"]["display"], "Dr. Ana Souza");
        assert_eq!(recipient["requestor"], true);
        assert_eq!(recipient["network"]["address"], "203.0.113.9");
        assert_eq!(event["agent"][0]["requestor"], false);
        assert_eq!(event["entity"][0]["what"]["identifier"]["value"], "L1");
        assert_eq!(
            event["entity"][0]["detail"][0]["valueString"],
            "Patient,Immunization"
        );
    }

    #[tokio::test]
    async fn a_bundle_has_one_audit_event_per_record_except_checkpoints() {
        use crate::audit::file::FileSinkOptions;
        use crate::audit::{AuditSink, FileAuditSink};

        let dir = tempfile::TempDir::new().expect("tempdir");
        let path = dir.path().join("audit.jsonl");
        let options = FileSinkOptions {
            checkpoint_every: 3,
            ..FileSinkOptions::default()
        };
        let sink = FileAuditSink::open_with(&path, [8; 32], "gw-0".into(), options).expect("opens");
        let events = [
            AuditEvent::new(AuditAction::CreationAttempt, "attempt"),
            AuditEvent::new(AuditAction::LinkCreated, "ok"),
            AuditEvent::new(AuditAction::CreationRefused, "UPSTREAM_ERROR"),
            AuditEvent::new(AuditAction::ManifestRequested, "bad-passcode"),
            AuditEvent::new(AuditAction::FileFetched, "ok"),
            AuditEvent::new(AuditAction::DirectFetched, "inactive"),
            AuditEvent::new(AuditAction::LinkRevoked, "ok"),
        ];
        for event in events {
            let event = AuditEvent {
                request_id: Some("req-1".into()),
                link_id: Some("L1".into()),
                ..event
            };
            sink.record(event).await.expect("records");
        }
        sink.checkpoint().await.expect("checkpoint");
        sink.close().await;
        // A write in progress at the end is not exported.
        std::fs::OpenOptions::new()
            .append(true)
            .open(&path)
            .and_then(|mut f| std::io::Write::write_all(&mut f, b"{\"seq\":"))
            .expect("appends");

        let report = crate::audit::verify_files(&[&path], &[8; 32], None);
        assert_eq!((report.records, report.checkpoints), (10, 3), "{report}");
        let bundle = export_fhir(&path).expect("exports");
        assert_eq!(bundle["resourceType"], "Bundle");
        assert_eq!(bundle["type"], "collection");
        let entries = bundle["entry"].as_array().expect("entries");
        assert_eq!(entries.len(), 7, "10 records less 3 checkpoints");
        let mut ids = std::collections::HashSet::new();
        for entry in entries {
            let event = &entry["resource"];
            assert_eq!(event["resourceType"], "AuditEvent");
            assert!(ids.insert(event["id"].as_str().expect("id").to_owned()));
            assert_eq!(
                entry["fullUrl"],
                json!(format!("urn:uuid:{}", event["id"].as_str().expect("id")))
            );
            assert!(event["type"]["system"].is_string() && event["type"]["code"].is_string());
            assert!(event["recorded"].as_str().expect("recorded").ends_with('Z'));
            assert!(["C", "R", "D"].contains(&event["action"].as_str().expect("action")));
            let agents = event["agent"].as_array().expect("agents");
            assert!(!agents.is_empty());
            assert!(agents.iter().all(|a| a["requestor"].is_boolean()));
            assert_eq!(event["source"]["observer"]["display"], "shl-gateway gw-0");
            assert_eq!(event["entity"][0]["what"]["identifier"]["value"], "L1");
            assert_eq!(event["entity"][1]["type"]["code"], "XrequestId");
        }
        let outcomes: Vec<&Value> = entries.iter().map(|e| &e["resource"]["outcome"]).collect();
        assert_eq!(
            outcomes,
            [
                &Value::Null,
                &json!("0"),
                &json!("8"),
                &json!("4"),
                &json!("0"),
                &json!("4"),
                &json!("0")
            ]
        );

        // A damaged line before the end is an error, not a silent gap.
        let text = std::fs::read_to_string(&path).expect("reads");
        std::fs::write(&path, text.replacen("{\"seq\":2,", "{\"seq\":2,,", 1)).expect("writes");
        assert!(matches!(
            export_fhir(&path),
            Err(AuditError::Corrupt { .. })
        ));
    }

    #[test]
    fn outcomes_map_to_fhir_severity() {
        use AuditAction::*;
        assert_eq!(outcome_code(LinkCreated, "ok"), Some("0"));
        assert_eq!(outcome_code(ManifestRequested, "bad-passcode"), Some("4"));
        assert_eq!(outcome_code(CreationRefused, "FORBIDDEN"), Some("4"));
        assert_eq!(outcome_code(CreationRefused, "UPSTREAM_TIMEOUT"), Some("8"));
        assert_eq!(outcome_code(CreationAttempt, "attempt"), None);
        let revoked = sealed_record(AuditEvent {
            actor: Some("tokenhash".into()),
            ..AuditEvent::new(LinkRevoked, "ok")
        });
        let event = audit_event(&revoked).expect("event");
        assert_eq!(event["action"], "D");
        assert_eq!(event["agent"][1]["who"]["identifier"]["value"], "tokenhash");
        assert!(event.get("entity").is_none());
    }
}
