//! Short helpers for calling the Cache service from tests.
#![allow(dead_code, unreachable_pub)]

use mintcache_client::DEGRADED_HEADER;
use mintcache_client::proto::cache_client::CacheClient;
use mintcache_client::proto::*;
use tonic::transport::Channel;
use tonic::{Code, Status};

use super::req;

/// A client bound to one version/namespace (`None` = server defaults).
#[derive(Clone)]
pub struct Calls {
    pub client: CacheClient<Channel>,
    pub version: Option<String>,
    pub namespace: Option<String>,
    /// `x-cache-consistency` of every call (`None`: not sent).
    pub consistency: Option<String>,
}

impl Calls {
    pub fn new(client: CacheClient<Channel>) -> Self {
        Self {
            client,
            version: None,
            namespace: None,
            consistency: None,
        }
    }

    pub fn version(mut self, v: &str) -> Self {
        self.version = Some(v.to_owned());
        self
    }

    pub fn namespace(mut self, ns: &str) -> Self {
        self.namespace = Some(ns.to_owned());
        self
    }

    pub fn consistency(mut self, c: &str) -> Self {
        self.consistency = Some(c.to_owned());
        self
    }

    fn wrap<T>(&self, m: T) -> tonic::Request<T> {
        let mut request = req(m, self.version.as_deref(), self.namespace.as_deref());
        if let Some(c) = &self.consistency {
            request
                .metadata_mut()
                .insert("x-cache-consistency", c.parse().expect("ascii metadata"));
        }
        request
    }

    /// A read, with whether the server flagged it degraded (backend failed, answered as miss).
    pub async fn try_get_full(&self, key: &[u8]) -> Result<(GetResponse, bool), Status> {
        let r = self.wrap(GetRequest {
            peek: false,
            key: key.to_vec(),
            lease_on_miss: None,
            ..Default::default()
        });
        let response = self.client.clone().get(r).await?;
        let degraded = response.metadata().get(DEGRADED_HEADER).is_some();
        Ok((response.into_inner(), degraded))
    }

    pub async fn try_get(&self, key: &[u8]) -> Result<GetResponse, Status> {
        self.try_get_full(key).await.map(|(r, _)| r)
    }

    /// A read that must succeed without the backend failing.
    pub async fn get(&self, key: &[u8]) -> GetResponse {
        let (response, degraded) = self.try_get_full(key).await.expect("get succeeds");
        assert!(
            !degraded,
            "read was degraded (backend failure answered as a miss)"
        );
        response
    }

    pub async fn try_set_with(&self, set: SetRequest) -> Result<bool, Status> {
        let r = self.wrap(set);
        self.client
            .clone()
            .set(r)
            .await
            .map(|r| r.into_inner().stored)
    }

    pub async fn try_set(&self, key: &[u8], value: &[u8], ttl: i64) -> Result<bool, Status> {
        self.try_set_with(SetRequest {
            key: key.to_vec(),
            value: value.to_vec(),
            ttl_seconds: ttl,
            ..Default::default()
        })
        .await
    }

    pub async fn set(&self, key: &[u8], value: &[u8]) {
        assert!(
            self.try_set(key, value, 0).await.expect("set succeeds"),
            "set stores"
        );
    }

    pub async fn try_delete(&self, key: &[u8]) -> Result<bool, Status> {
        let r = self.wrap(DeleteRequest {
            key: key.to_vec(),
            ..Default::default()
        });
        self.client
            .clone()
            .delete(r)
            .await
            .map(|r| r.into_inner().deleted)
    }

    pub async fn delete(&self, key: &[u8]) -> bool {
        self.try_delete(key).await.expect("delete succeeds")
    }

    pub async fn add(&self, key: &[u8], value: &[u8]) -> bool {
        let r = self.wrap(AddRequest {
            key: key.to_vec(),
            value: value.to_vec(),
            ..Default::default()
        });
        self.client
            .clone()
            .add(r)
            .await
            .expect("add succeeds")
            .into_inner()
            .stored
    }
}

/// Asserts a hit with this value.
pub fn assert_hit(r: &GetResponse, value: &[u8]) {
    assert_eq!(r.outcome(), Outcome::Hit, "expected HIT, got {r:?}");
    assert_eq!(r.value, value, "hit with the wrong value");
}

/// Asserts a miss.
pub fn assert_miss(r: &GetResponse) {
    assert_eq!(r.outcome(), Outcome::Miss, "expected MISS, got {r:?}");
    assert!(r.value.is_empty());
}

/// Asserts an error with this code whose message contains `needle`.
pub fn assert_status<T: std::fmt::Debug>(r: Result<T, Status>, code: Code, needle: &str) {
    let status = r.expect_err("expected an error status");
    assert_eq!(status.code(), code, "wrong code: {status:?}");
    assert!(
        status.message().contains(needle),
        "message {:?} should mention {needle:?}",
        status.message()
    );
}

impl Calls {
    pub async fn try_increment(
        &self,
        key: &[u8],
        delta: i64,
        initial: Option<u64>,
        ttl: i64,
    ) -> Result<u64, Status> {
        let r = self.wrap(IncrementRequest {
            no_expiry: false,
            key: key.to_vec(),
            delta,
            initial_value: initial,
            ttl_seconds: ttl,
        });
        self.client
            .clone()
            .increment(r)
            .await
            .map(|r| r.into_inner().value)
    }

    pub async fn try_touch(&self, key: &[u8], ttl: i64) -> Result<bool, Status> {
        let r = self.wrap(TouchRequest {
            no_expiry: false,
            key: key.to_vec(),
            ttl_seconds: ttl,
        });
        self.client
            .clone()
            .touch(r)
            .await
            .map(|r| r.into_inner().touched)
    }

    pub async fn invalidate(&self, key: &[u8]) -> bool {
        let r = self.wrap(InvalidateRequest { key: key.to_vec() });
        self.client
            .clone()
            .invalidate(r)
            .await
            .expect("invalidate")
            .into_inner()
            .invalidated
    }

    /// A batched read, with whether the server flagged it degraded.
    pub async fn get_many(&self, keys: &[Vec<u8>]) -> (Vec<GetManyResult>, bool) {
        self.get_many_with(keys, None).await
    }

    /// A batched read with explicit cold-miss protection.
    pub async fn get_many_with(
        &self,
        keys: &[Vec<u8>],
        lease_on_miss: Option<bool>,
    ) -> (Vec<GetManyResult>, bool) {
        let r = self.wrap(GetManyRequest {
            peek: false,
            keys: keys.to_vec(),
            lease_on_miss,
            ..Default::default()
        });
        let response = self.client.clone().get_many(r).await.expect("get_many");
        let degraded = response.metadata().get(DEGRADED_HEADER).is_some();
        (response.into_inner().results, degraded)
    }

    pub async fn set_many(&self, items: Vec<SetManyItem>) -> Vec<SetManyResult> {
        let r = self.wrap(SetManyRequest { items });
        self.client
            .clone()
            .set_many(r)
            .await
            .expect("set_many")
            .into_inner()
            .results
    }

    pub async fn delete_many(&self, keys: &[Vec<u8>]) -> Vec<DeleteManyResult> {
        let r = self.wrap(DeleteManyRequest {
            keys: keys.to_vec(),
        });
        self.client
            .clone()
            .delete_many(r)
            .await
            .expect("delete_many")
            .into_inner()
            .results
    }
}

/// A batch item with default ttl and grace.
pub fn item(key: &[u8], value: &[u8]) -> SetManyItem {
    SetManyItem {
        key: key.to_vec(),
        value: value.to_vec(),
        ..Default::default()
    }
}
