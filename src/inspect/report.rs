//! The report of `inspect`: one line per stage that ran, as text for a person or JSON for a
//! CI job. A stage is required unless the profile says receivers must not block on it (the
//! app attestation); the report is `ok` when every required stage passed.

use std::fmt;

use serde::Serialize;

use crate::receiver::{Profile, Stage};

/// The outcome of one stage.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct StageReport {
    pub stage: Stage,
    pub ok: bool,
    /// Whether a failure here fails the whole.
    pub required: bool,
    pub message: String,
    /// What is not wrong enough to fail, but worth fixing.
    pub warnings: Vec<String>,
}

/// Every stage that ran, in order, and the verdict.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Report {
    /// Every required stage passed.
    pub ok: bool,
    /// The rules the input was held to, once known.
    pub profile: Option<Profile>,
    /// The first required stage that failed.
    pub fail_stage: Option<Stage>,
    pub stages: Vec<StageReport>,
}

impl Default for Report {
    fn default() -> Self {
        Self {
            ok: true,
            profile: None,
            fail_stage: None,
            stages: Vec::new(),
        }
    }
}

impl Report {
    /// Records a required stage; returns whether it passed, so a caller can stop there.
    pub(crate) fn required(
        &mut self,
        stage: Stage,
        outcome: Result<String, String>,
        warnings: Vec<String>,
    ) -> bool {
        self.push(stage, true, outcome, warnings)
    }

    /// Records a stage whose failure does not fail the whole.
    pub(crate) fn optional(
        &mut self,
        stage: Stage,
        outcome: Result<String, String>,
        warnings: Vec<String>,
    ) {
        self.push(stage, false, outcome, warnings);
    }

    fn push(
        &mut self,
        stage: Stage,
        required: bool,
        outcome: Result<String, String>,
        warnings: Vec<String>,
    ) -> bool {
        let ok = outcome.is_ok();
        if required && !ok && self.fail_stage.is_none() {
            self.ok = false;
            self.fail_stage = Some(stage);
        }
        self.stages.push(StageReport {
            stage,
            ok,
            required,
            message: outcome.unwrap_or_else(|error| error),
            warnings,
        });
        ok
    }

    /// The report of `stage`, when it ran.
    pub fn stage(&self, stage: Stage) -> Option<&StageReport> {
        self.stages.iter().find(|report| report.stage == stage)
    }

    /// The report as one JSON document.
    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).unwrap_or_else(|_| {
            // Serializing plain strings, booleans and enums cannot fail; this is for form.
            r#"{"ok":false,"stages":[]}"#.to_owned()
        })
    }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.profile {
            Some(profile) => writeln!(f, "shl-gateway inspect ({} profile)", profile.name())?,
            None => writeln!(f, "shl-gateway inspect")?,
        }
        for stage in &self.stages {
            let verdict = match (stage.ok, stage.required) {
                (true, _) => "pass",
                (false, true) => "FAIL",
                (false, false) => "note",
            };
            writeln!(
                f,
                "  {verdict}  {:<12} {}",
                stage.stage.name(),
                Printable(&stage.message)
            )?;
            for warning in &stage.warnings {
                writeln!(f, "        {:<12} warning: {}", "", Printable(warning))?;
            }
        }
        match self.fail_stage {
            None => write!(f, "OK: every required check passes"),
            Some(stage) => write!(f, "FAILED at {stage}"),
        }
    }
}

/// Text for a terminal: messages quote what a sender wrote (a manifest's `status`, a `kid`, a
/// resource type), so control characters are escaped (a newline would forge a line of the
/// report, an escape sequence drive the terminal) and so are the bidirectional overrides that
/// reorder what is shown.
struct Printable<'a>(&'a str);

impl fmt::Display for Printable<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for c in self.0.chars() {
            let bidi = matches!(c, '\u{061c}' | '\u{200e}' | '\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}');
            if c.is_control() || bidi {
                write!(f, "{}", c.escape_unicode())?;
            } else {
                fmt::Write::write_char(f, c)?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use serde_json::{Value, json};

    use super::*;

    fn sample() -> Report {
        let mut report = Report {
            profile: Some(Profile::Ktc),
            ..Report::default()
        };
        assert!(report.required(Stage::Decode, Ok("bare".to_owned()), vec![]));
        assert!(!report.required(
            Stage::Payload,
            Err("flag must be U".to_owned()),
            vec!["unknown flag letter".to_owned()]
        ));
        report
    }

    #[test]
    fn the_first_failed_required_stage_fails_the_report() {
        let report = sample();
        assert!(!report.ok);
        assert_eq!(report.fail_stage, Some(Stage::Payload));
        assert!(!report.stage(Stage::Payload).expect("ran").ok);
        assert!(report.stage(Stage::Retrieve).is_none());
    }

    #[test]
    fn an_optional_failure_leaves_the_report_ok() {
        let mut report = Report::default();
        report.required(Stage::Bundle, Ok("fine".to_owned()), vec![]);
        report.optional(Stage::Attestation, Err("bad signature".to_owned()), vec![]);
        assert!(report.ok);
        assert_eq!(report.fail_stage, None);
        assert!(report.to_string().contains("note  attestation"));
        assert!(
            report
                .to_string()
                .ends_with("OK: every required check passes")
        );
    }

    #[test]
    fn the_json_has_a_verdict_and_one_object_per_stage() {
        let json: Value = serde_json::from_str(&sample().to_json()).expect("JSON");
        assert_eq!(
            json,
            json!({
                "ok": false,
                "profile": "ktc",
                "failStage": "payload",
                "stages": [
                    {"stage": "decode", "ok": true, "required": true, "message": "bare",
                     "warnings": []},
                    {"stage": "payload", "ok": false, "required": true,
                     "message": "flag must be U", "warnings": ["unknown flag letter"]},
                ]
            })
        );
    }

    #[test]
    fn what_a_sender_wrote_cannot_forge_lines_or_drive_the_terminal() {
        // A manifest `status`, a `kid` or a resource type is the sender's text: a newline in
        // it must not make a line of its own (a fake verdict), nor an escape reach the terminal.
        let mut report = Report::default();
        report.required(
            Stage::Retrieve,
            Err("status x\nOK: every required check passes\r\u{1b}[2J".to_owned()),
            vec!["kid \u{1b}]0;title\u{7} \u{202e}txt.exe".to_owned()],
        );
        let text = report.to_string();
        assert_eq!(text.lines().count(), 4, "{text}");
        assert!(
            !text
                .chars()
                .any(|c| (c.is_control() && c != '\n') || c == '\u{202e}'),
            "{text:?}"
        );
        assert!(text.ends_with("FAILED at retrieve"), "{text}");
        // The JSON keeps the text as it was: its escaping is JSON's.
        let json: Value = serde_json::from_str(&report.to_json()).expect("JSON");
        assert_eq!(
            json["stages"][0]["message"],
            "status x\nOK: every required check passes\r\u{1b}[2J"
        );
    }

    #[test]
    fn the_text_names_each_stage_and_the_verdict() {
        let text = sample().to_string();
        assert_eq!(
            text,
            "shl-gateway inspect (Kill the Clipboard profile)\n  \
             pass  decode       bare\n  \
             FAIL  payload      flag must be U\n                     \
             warning: unknown flag letter\n\
             FAILED at payload"
        );
    }
}
