//! Offline verification of a chain: what an auditor, or an operator after an incident, runs.
//!
//! It reads records in order and stops at the first one that is not what the writer would
//! have produced, naming it by line (files) or seq (PostgreSQL) and saying why. Stopping there
//! is deliberate: after one bad record every later one is suspect, and the first break is
//! where the investigation starts.

use std::fmt;
use std::fs::File;
use std::io::{self, BufRead};
use std::path::{Path, PathBuf};

use super::AuditAction;
use super::chain::{ChainState, GENESIS, Head, LineError, Record, Sealer};
use crate::crypto::AuditKey;

/// The result of a verification: counts of what checked out, and the first failure if any.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifyReport {
    /// Records that passed every check (up to the failure, if any).
    pub records: u64,
    /// Of those, how many were checkpoints.
    pub(crate) checkpoints: u64,
    /// The first record checked.
    pub(crate) first: Option<Head>,
    /// The last record that passed: the head of the verified chain.
    pub(crate) head: Option<Head>,
    pub(crate) failure: Option<VerifyFailure>,
}

impl VerifyReport {
    pub fn is_ok(&self) -> bool {
        self.failure.is_none()
    }
}

impl fmt::Display for VerifyReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (&self.failure, &self.first, &self.head) {
            (Some(failure), ..) => write!(
                f,
                "FAILED: {failure} ({} records verified before it)",
                self.records
            ),
            (None, Some(first), Some(head)) => write!(
                f,
                "OK: {} records ({} checkpoints), seq {}..={}, head {head}",
                self.records, self.checkpoints, first.seq, head.seq
            ),
            (None, ..) => f.write_str("OK: no records"),
        }
    }
}

/// The first record that failed, where it is, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct VerifyFailure {
    pub(crate) file: Option<PathBuf>,
    /// 1-based line number in `file`.
    pub(crate) line: Option<u64>,
    /// The record's seq when it could be read (or the row's seq for PostgreSQL).
    pub(crate) seq: Option<u64>,
    pub(crate) kind: FailureKind,
    pub(crate) detail: String,
}

impl fmt::Display for VerifyFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(file) = &self.file {
            write!(f, "{}: ", file.display())?;
        }
        match (self.line, self.seq) {
            (Some(line), Some(seq)) => write!(f, "line {line} (seq {seq}): ")?,
            (Some(line), None) => write!(f, "line {line}: ")?,
            (None, Some(seq)) => write!(f, "seq {seq}: ")?,
            (None, None) => {}
        }
        write!(f, "{}: {}", self.kind, self.detail)
    }
}

/// Why a record failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum FailureKind {
    /// The file or database could not be read.
    Unreadable,
    /// The last line has no newline: a write was interrupted.
    Torn,
    /// Not a record: no MAC suffix, not UTF-8, or invalid JSON.
    Unparsable,
    /// The MAC does not match: the record was edited, forged, or the key is wrong.
    BadMac,
    /// A record of another chain.
    WrongChain,
    /// The seq is not the previous one plus one: records missing, duplicated or reordered.
    SeqGap,
    /// `prev` is not the previous record's MAC.
    BrokenLink,
    /// The chain does not start at seq 0 (nor at a rotation checkpoint).
    MissingStart,
    /// The expected head is beyond the end: records were cut off.
    Truncated,
    /// The record at the expected head's seq has another MAC: the chain was rewritten.
    HeadMismatch,
    /// The expected head given to the verifier is not `seq:mac`.
    InvalidHead,
    /// The key is unusable.
    InvalidKey,
}

impl fmt::Display for FailureKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Unreadable => "unreadable",
            Self::Torn => "torn last line",
            Self::Unparsable => "unparsable",
            Self::BadMac => "bad MAC",
            Self::WrongChain => "wrong chain",
            Self::SeqGap => "seq gap",
            Self::BrokenLink => "broken link to previous record",
            Self::MissingStart => "missing start",
            Self::Truncated => "truncated",
            Self::HeadMismatch => "head mismatch",
            Self::InvalidHead => "invalid expected head",
            Self::InvalidKey => "invalid key",
        })
    }
}

/// Checks a whole file.
pub fn verify_file(path: &Path, key: &[u8]) -> VerifyReport {
    verify_paths(&[path], key, None)
}

/// Checks a whole file and that it reaches `expected_head` (`seq:mac`, as exported from
/// [`crate::audit::FileAuditSink::head`] or a checkpoint log line): a chain cut after that
/// head still verifies on its own, so only the exported head reveals the truncation.
pub fn verify_file_against_head(path: &Path, key: &[u8], expected_head: &str) -> VerifyReport {
    verify_paths(&[path], key, Some(expected_head))
}

/// Checks rotated files as one chain, oldest first, optionally against an exported head.
pub fn verify_files<P: AsRef<Path>>(
    paths: &[P],
    key: &[u8],
    expected_head: Option<&str>,
) -> VerifyReport {
    let paths: Vec<&Path> = paths.iter().map(AsRef::as_ref).collect();
    verify_paths(&paths, key, expected_head)
}

fn verify_paths(paths: &[&Path], key: &[u8], expected_head: Option<&str>) -> VerifyReport {
    let mut verifier = match Verifier::new(key, expected_head) {
        Ok(verifier) => verifier,
        Err(failure) => return VerifyReport::failed(failure),
    };
    for path in paths {
        let mut failure = None;
        let end = read_lines(path, |number, line| {
            let at = Location {
                file: Some(path),
                line: Some(number),
                row_seq: None,
            };
            match verifier.check(&at, line) {
                Ok(()) => true,
                Err(f) => {
                    failure = Some(f);
                    false
                }
            }
        });
        let failure = match (failure, end) {
            (Some(failure), _) => Some(failure),
            (None, Err(error)) => Some(Location::file(path, None).fail(
                None,
                FailureKind::Unreadable,
                error.to_string(),
            )),
            (None, Ok(LinesEnd::Torn(number))) => Some(Location::file(path, Some(number)).fail(
                None,
                FailureKind::Torn,
                "no trailing newline: a write was interrupted (the sink cuts it when it reopens)"
                    .into(),
            )),
            (None, Ok(LinesEnd::Complete)) => None,
        };
        if let Some(failure) = failure {
            return verifier.report(Some(failure));
        }
    }
    let last = paths.last().copied();
    verifier.finish(last)
}

/// Where a record was read from.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Location<'a> {
    pub(crate) file: Option<&'a Path>,
    pub(crate) line: Option<u64>,
    pub(crate) row_seq: Option<u64>,
}

impl<'a> Location<'a> {
    fn file(path: &'a Path, line: Option<u64>) -> Self {
        Self {
            file: Some(path),
            line,
            row_seq: None,
        }
    }

    pub(crate) fn row(seq: u64) -> Self {
        Self {
            file: None,
            line: None,
            row_seq: Some(seq),
        }
    }

    fn fail(&self, seq: Option<u64>, kind: FailureKind, detail: String) -> VerifyFailure {
        VerifyFailure {
            file: self.file.map(Path::to_path_buf),
            line: self.line,
            seq: seq.or(self.row_seq),
            kind,
            detail,
        }
    }
}

/// Checks records one at a time, in order.
#[derive(Debug)]
pub(crate) struct Verifier {
    sealer: Sealer,
    chain: Option<String>,
    next: Option<ChainState>,
    records: u64,
    checkpoints: u64,
    first: Option<Head>,
    /// The exported head the chain must reach.
    expected: Option<Head>,
    reached_expected: bool,
}

impl Verifier {
    pub(crate) fn new(key: &[u8], expected_head: Option<&str>) -> Result<Self, VerifyFailure> {
        let nowhere = Location {
            file: None,
            line: None,
            row_seq: None,
        };
        let key = AuditKey::from_slice(key)
            .map_err(|e| nowhere.fail(None, FailureKind::InvalidKey, e.to_string()))?;
        let sealer = Sealer::new(&key, String::new())
            .map_err(|e| nowhere.fail(None, FailureKind::InvalidKey, e.to_string()))?;
        let expected = match expected_head {
            None => None,
            Some(text) => Some(
                text.parse()
                    .map_err(|why: String| nowhere.fail(None, FailureKind::InvalidHead, why))?,
            ),
        };
        Ok(Self {
            sealer,
            chain: None,
            next: None,
            records: 0,
            checkpoints: 0,
            first: None,
            expected,
            reached_expected: false,
        })
    }

    /// Checks the next record: MAC first (nothing else in a record can be trusted before it),
    /// then the chain name, the seq, and the link.
    pub(crate) fn check(
        &mut self,
        at: &Location<'_>,
        line: Result<&str, &'static str>,
    ) -> Result<(), VerifyFailure> {
        let line = line.map_err(|why| at.fail(None, FailureKind::Unparsable, why.into()))?;
        let (record, head) = match self.sealer.open_line(line) {
            Ok(opened) => opened,
            Err(LineError::Unparsable(why)) => {
                return Err(at.fail(None, FailureKind::Unparsable, why));
            }
            Err(LineError::BadMac) => {
                let seq = Record::parse_unverified(line).ok().map(|(r, _)| r.seq);
                return Err(at.fail(
                    seq,
                    FailureKind::BadMac,
                    "the record was edited or forged, or the key is wrong".into(),
                ));
            }
        };
        let seq = Some(record.seq);
        if let Some(row) = at.row_seq
            && row != record.seq
        {
            return Err(at.fail(
                Some(row),
                FailureKind::SeqGap,
                format!("row seq {row} holds the record of seq {}", record.seq),
            ));
        }
        match &self.chain {
            Some(chain) if *chain != record.chain => {
                return Err(at.fail(
                    seq,
                    FailureKind::WrongChain,
                    format!("chain {:?}, expected {chain:?}", record.chain),
                ));
            }
            Some(_) => {}
            None => self.chain = Some(record.chain.clone()),
        }
        match &self.next {
            None if record.seq == 0 => {
                if record.prev != GENESIS {
                    return Err(at.fail(
                        seq,
                        FailureKind::BrokenLink,
                        "seq 0 does not start from the genesis value".into(),
                    ));
                }
            }
            None if record.is_rotation_start() => {}
            None => {
                return Err(at.fail(
                    seq,
                    FailureKind::MissingStart,
                    format!(
                        "the chain starts at seq {} without a rotation checkpoint: \
                         earlier records are missing",
                        record.seq
                    ),
                ));
            }
            Some(next) if record.seq != next.next_seq => {
                let why = if record.seq > next.next_seq {
                    format!(
                        "expected seq {}, found {}: records missing or moved",
                        next.next_seq, record.seq
                    )
                } else {
                    format!(
                        "expected seq {}, found {}: a record repeated or moved",
                        next.next_seq, record.seq
                    )
                };
                return Err(at.fail(seq, FailureKind::SeqGap, why));
            }
            Some(next) if record.prev != next.prev => {
                return Err(at.fail(
                    seq,
                    FailureKind::BrokenLink,
                    "prev is not the MAC of the record before".into(),
                ));
            }
            Some(_) => {}
        }
        if let Some(expected) = &self.expected
            && expected.seq == record.seq
        {
            if expected.mac != head.mac {
                return Err(at.fail(
                    seq,
                    FailureKind::HeadMismatch,
                    format!(
                        "the exported head has MAC {}, this record {}: the chain was rewritten",
                        expected.mac, head.mac
                    ),
                ));
            }
            self.reached_expected = true;
        }
        self.records += 1;
        if record.action == AuditAction::Checkpoint {
            self.checkpoints += 1;
        }
        if self.first.is_none() {
            self.first = Some(head.clone());
        }
        self.next = Some(ChainState::after(&head));
        Ok(())
    }

    fn head(&self) -> Option<Head> {
        self.next.as_ref().and_then(ChainState::head)
    }

    pub(crate) fn report(&self, failure: Option<VerifyFailure>) -> VerifyReport {
        VerifyReport {
            records: self.records,
            checkpoints: self.checkpoints,
            first: self.first.clone(),
            head: self.head(),
            failure,
        }
    }

    /// The report once every record passed: only the expected head can still fail it.
    pub(crate) fn finish(&self, last_file: Option<&Path>) -> VerifyReport {
        let failure = match &self.expected {
            Some(expected) if !self.reached_expected => {
                let ends = match self.head() {
                    Some(head) => format!("the chain ends at seq {}", head.seq),
                    None => "the chain is empty".to_owned(),
                };
                Some(VerifyFailure {
                    file: last_file.map(Path::to_path_buf),
                    line: None,
                    seq: Some(expected.seq),
                    kind: FailureKind::Truncated,
                    detail: format!(
                        "the exported head {expected} is missing, {ends}: records were cut off"
                    ),
                })
            }
            _ => None,
        };
        self.report(failure)
    }
}

impl VerifyReport {
    pub(crate) fn failed(failure: VerifyFailure) -> Self {
        Self {
            records: 0,
            checkpoints: 0,
            first: None,
            head: None,
            failure: Some(failure),
        }
    }
}

/// How reading a file's lines ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum LinesEnd {
    /// Every line ended with `\n` (or the callback stopped early).
    Complete,
    /// This final line has no `\n`.
    Torn(u64),
}

/// Feeds each `\n`-terminated line (1-based number, text or why it is not text) to `each`
/// until it returns false. A final line without `\n` is not passed on: it is a write still in
/// progress or torn by a crash, not a record.
pub(crate) fn read_lines(
    path: &Path,
    mut each: impl FnMut(u64, Result<&str, &'static str>) -> bool,
) -> io::Result<LinesEnd> {
    let mut reader = io::BufReader::new(File::open(path)?);
    let mut buf = Vec::new();
    let mut number = 0u64;
    loop {
        buf.clear();
        if reader.read_until(b'\n', &mut buf)? == 0 {
            return Ok(LinesEnd::Complete);
        }
        number += 1;
        let Some(line) = buf.strip_suffix(b"\n") else {
            return Ok(LinesEnd::Torn(number));
        };
        let text = std::str::from_utf8(line).map_err(|_| "not UTF-8");
        if !each(number, text) {
            return Ok(LinesEnd::Complete);
        }
    }
}
