//! `/api/v1/dht/…`: Kademlia lookups of a peer and of providers, timed.

use std::time::Instant;

use axum::Json;
use axum::extract::{Path, State};

use phase_protocol::job::Capability;
use phase_protocol::{Cid, PeerId};

use super::super::extract::{Q, unavailable};
use super::super::types::{ApiError, ErrorCode, FindPeerAnswer, ProvidersAnswer, ProvidersQuery};
use super::{ApiResult, ApiState, REQUEST_DEADLINE, within};

fn bad(message: String) -> ApiError {
    ApiError::new(ErrorCode::BadRequest, message)
}

fn millis(started: Instant) -> u64 {
    u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX)
}

pub(super) async fn find_peer(
    State(s): State<ApiState>,
    Path(text): Path<String>,
) -> ApiResult<FindPeerAnswer> {
    let peer: PeerId = text
        .parse()
        .map_err(|e| bad(format!("path: `{text}` is not a PeerId: {e}")))?;
    let started = Instant::now();
    let found = within(REQUEST_DEADLINE, async {
        s.node
            .network()
            .find_peer(peer)
            .await
            .map_err(|e| unavailable(&e))
    })
    .await?;
    Ok(Json(FindPeerAnswer {
        peer,
        found: found.is_some(),
        addrs: found.unwrap_or_default(),
        millis: millis(started),
    }))
}

/// What a provider lookup is for.
enum Key {
    Content(Cid),
    Capability(Capability),
}

pub(super) async fn providers(
    State(s): State<ApiState>,
    Q(query): Q<ProvidersQuery>,
) -> ApiResult<ProvidersAnswer> {
    let key = match (query.cid, query.capability) {
        (Some(cid), None) => Key::Content(
            cid.parse::<Cid>()
                .map_err(|e| bad(format!("cid: `{cid}` is not a CID: {e}")))?,
        ),
        (None, Some(name)) => Key::Capability(
            name.parse::<Capability>()
                .map_err(|e| bad(format!("capability: {e}")))?,
        ),
        _ => return Err(bad("give exactly one of `cid` and `capability`".into())),
    };
    let network = s.node.network();
    let started = Instant::now();
    let found = within(REQUEST_DEADLINE, async {
        match key {
            Key::Content(cid) => network.find_providers(cid).await,
            Key::Capability(capability) => network.find_capability(&capability).await,
        }
        .map_err(|e| unavailable(&e))
    })
    .await?;
    let mut providers: Vec<PeerId> = found.into_iter().collect();
    providers.sort();
    Ok(Json(ProvidersAnswer {
        providers,
        millis: millis(started),
    }))
}
