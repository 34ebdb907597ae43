//! `gslbd explain`: why a client gets the answer it gets.
//!
//! Builds the client exactly as the query path does (`gslb::client_for`), runs the same
//! `policy::select` with a recording tracer, and reports the location found, the rule, every
//! pool and candidate, the answer, its TTL and the ECS scope.

use std::fmt::Write;
use std::net::IpAddr;

use serde::Serialize;

use crate::dns::wire::ClientSubnet;
use crate::geo::GeoDb;
use crate::gslb::{address_ttl, client_for, decide, response_scope};
use crate::health::Snapshot;
use crate::model::Model;
use crate::net::{Family, Subnet};
use crate::policy::{AnswerKind, QueryInput, Trace};
use crate::rr::wire_key;

/// The explanation of one decision; `Display` for people, `Serialize` for `--json` and the API.
#[derive(Debug, Serialize)]
pub struct Explanation<'a> {
    /// The queried name, fully qualified.
    pub(crate) name: String,
    /// `A` or `AAAA`.
    pub(crate) qtype: &'static str,
    /// The origin of the zone the name is placed in.
    pub(crate) zone: String,
    /// The resolver address the query came from.
    pub(crate) source: String,
    /// The ECS subnet the query carried (`192.0.2.0/24`), if any.
    pub(crate) ecs: Option<String>,
    /// The address the decision used (ECS address or source).
    pub(crate) client: String,
    /// What GeoIP found for the client, if anything.
    pub(crate) location: Option<crate::geo::Location>,
    /// The GeoIP file that answered.
    pub(crate) database: Option<String>,
    /// TTL of the answer, seconds.
    pub(crate) ttl: u32,
    /// ECS scope prefix length of the response.
    pub(crate) ecs_scope: u8,
    /// The answered addresses, in answer order.
    pub(crate) answer: Vec<String>,
    /// `answer`, `nodata` or `servfail`.
    pub(crate) outcome: &'static str,
    /// Every step of the decision: rule, pools, candidates.
    pub(crate) trace: Trace<'a>,
}

/// What `explain` could not do.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ExplainError {
    /// The name is not a GSLB name.
    #[error("{0} is not a GSLB name of any zone served (static names answer the same to everyone)")]
    NotGslb(String),
    /// The name or the ECS prefix cannot be parsed.
    #[error("{0}")]
    BadInput(String),
}

/// Parses `PREFIX` as given to `--ecs` (`192.0.2.0/24`) into a validated client subnet.
pub fn parse_ecs(s: &str) -> Result<ClientSubnet, ExplainError> {
    let n = Subnet::parse(s).map_err(ExplainError::BadInput)?;
    Ok(ClientSubnet {
        family: if n.addr.is_ipv4() { 1 } else { 2 },
        source_prefix: n.prefix,
        addr: n.addr,
    })
}

/// Explains the answer to `name`/`qtype` for a client at `source` with optional ECS.
pub fn explain<'a>(
    model: &'a Model,
    snap: &Snapshot,
    geo: &GeoDb,
    name: &str,
    family: Family,
    source: IpAddr,
    ecs: Option<&ClientSubnet>,
) -> Result<Explanation<'a>, ExplainError> {
    let fqdn = if name.ends_with('.') {
        name.to_string()
    } else {
        format!("{name}.")
    };
    let parsed = hickory_proto::rr::Name::from_ascii(&fqdn)
        .map_err(|e| ExplainError::BadInput(format!("{name:?}: {e}")))?;
    let key = wire_key(&parsed);
    let entry = model
        .gslb
        .iter()
        .find(|g| wire_key(&g.owner) == key)
        .ok_or_else(|| ExplainError::NotGslb(fqdn.clone()))?;
    let client = client_for(entry, geo, source, ecs);
    let mut trace = Trace::new(&entry.def, &model.datacenters.list)
        .with_reasons(&snap.why)
        .with_targets(&model.hostnames, snap.resolutions.clone());
    // A fixed input: explain shows the deterministic part; random policies say so in the trace.
    let input = QueryInput::default();
    let sel = decide(model, snap, entry, &client, family, &input, &mut trace);
    let scope = response_scope(entry, ecs, &client, sel.scope);
    let (ttl, _) = address_ttl(model, snap, entry, &sel, tokio::time::Instant::now);
    if let Some(a) = trace.answer.as_mut() {
        a.ecs_scope = scope;
        a.ttl = ttl;
    }
    let mut answer: Vec<String> = sel
        .addresses(
            &entry.def,
            &model.datacenters.list,
            snap.resolutions.as_deref(),
        )
        .map(|a| a.to_string())
        .collect();
    if let Some(h) = sel
        .cname()
        .and_then(|d| model.datacenters.list.get(d.0 as usize)?.target)
        .and_then(|h| model.hostnames.get(h.0 as usize))
    {
        answer.push(format!("CNAME {}", h.name));
    }
    let database = client
        .location
        .and_then(|l| geo.database(l.db))
        .map(|d| d.path.display().to_string());
    Ok(Explanation {
        name: fqdn,
        qtype: if family == Family::V4 { "A" } else { "AAAA" },
        zone: model
            .zones
            .get(entry.zone as usize)
            .map(|z| z.origin.to_string())
            .unwrap_or_default(),
        source: source.to_string(),
        ecs: ecs.map(|c| format!("{}/{}", c.addr, c.source_prefix)),
        client: format!("{}/{}", client.addr, client.source_prefix),
        location: client.location,
        database,
        ttl,
        ecs_scope: scope,
        answer,
        outcome: match sel.outcome {
            AnswerKind::Answer => "answer",
            AnswerKind::Cname => "cname",
            AnswerKind::NoData => "nodata",
            AnswerKind::ServFail => "servfail",
        },
        trace,
    })
}

impl std::fmt::Display for Explanation<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut s = String::new();
        let _ = writeln!(s, "{} {} (zone {})", self.name, self.qtype, self.zone);
        let _ = writeln!(
            s,
            "source: {}  ecs: {}  decided for: {}",
            self.source,
            self.ecs.as_deref().unwrap_or("-"),
            self.client
        );
        match (&self.location, &self.database) {
            (Some(l), db) => {
                let _ = writeln!(
                    s,
                    "location: {} [{}]",
                    l.describe(),
                    db.as_deref().unwrap_or("?")
                );
            }
            (None, _) => {
                let _ = writeln!(
                    s,
                    "location: none (no GeoIP hit, or not needed by this name)"
                );
            }
        }
        f.write_str(&s)?;
        write!(f, "{}", self.trace)?;
        writeln!(
            f,
            "final: {} -> [{}] ttl {} ecs scope /{}",
            self.outcome,
            self.answer.join(", "),
            self.ttl,
            self.ecs_scope
        )
    }
}
