//! The batched calls of [`Client`]: `GetMany`, `SetMany`, `DeleteMany`, with one result per
//! key (a bad key fails only itself).

use crate::client::{Client, Retry, degraded, lease_bytes};
use crate::error::Error;
use crate::proto::{self, cache_client::CacheClient};
use crate::types::{KeyError, Lookup, SetOptions, wire_seconds};

impl Client {
    /// Reads many keys in one call; one result per key, in order. A bad key fails only itself.
    pub async fn get_many<I, K>(&self, keys: I) -> Result<Vec<Result<Lookup, KeyError>>, Error>
    where
        I: IntoIterator<Item = K>,
        K: Into<Vec<u8>>,
    {
        self.read_many(keys.into_iter().map(Into::into).collect(), false)
            .await
    }

    /// Looks at many keys without taking part in any refresh election (see
    /// [`peek`](Self::peek)); one result per key, in order.
    pub async fn peek_many<I, K>(&self, keys: I) -> Result<Vec<Result<Lookup, KeyError>>, Error>
    where
        I: IntoIterator<Item = K>,
        K: Into<Vec<u8>>,
    {
        self.read_many(keys.into_iter().map(Into::into).collect(), true)
            .await
    }

    async fn read_many(
        &self,
        keys: Vec<Vec<u8>>,
        peek: bool,
    ) -> Result<Vec<Result<Lookup, KeyError>>, Error> {
        let message = proto::GetManyRequest {
            keys,
            lease_on_miss: if peek {
                None
            } else {
                self.defaults.lease_on_miss
            },
            peek,
            early_refresh_beta: None,
        };
        let response = self
            .unary(Retry::OnUnavailable, message, |ch, r| async move {
                CacheClient::new(ch).get_many(r).await
            })
            .await?;
        let degraded = degraded(response.metadata());
        response
            .into_inner()
            .results
            .into_iter()
            .map(|mut r| match r.error.take() {
                Some(e) => Ok(Err(KeyError::from(e))),
                None => Lookup::from_wire(r.into(), degraded).map(Ok),
            })
            .collect()
    }

    /// Stores many values in one call; one result (stored or not) per item, in order. When an
    /// item carries a lease token, the call is retried only when it cannot have reached the
    /// server (see [`set_with`](Self::set_with)).
    pub async fn set_many<I, K, V>(&self, items: I) -> Result<Vec<Result<bool, KeyError>>, Error>
    where
        I: IntoIterator<Item = (K, V, SetOptions)>,
        K: Into<Vec<u8>>,
        V: Into<Vec<u8>>,
    {
        let message = proto::SetManyRequest {
            items: items
                .into_iter()
                .map(|(key, value, options)| proto::SetManyItem {
                    counter: options.counter,
                    key: key.into(),
                    value: value.into(),
                    ttl_seconds: wire_seconds(options.ttl),
                    grace_seconds: wire_seconds(options.grace),
                    flags: options.flags,
                    lease_token: lease_bytes(&options),
                    no_expiry: options.no_expiry,
                    no_grace: options.no_grace,
                    recompute_ms: 0,
                })
                .collect(),
        };
        let retry = if message
            .items
            .iter()
            .any(|item| !item.lease_token.is_empty())
        {
            Retry::UnlessSent
        } else {
            Retry::OnUnavailable
        };
        let response = self
            .unary(retry, message, |ch, r| async move {
                CacheClient::new(ch).set_many(r).await
            })
            .await?;
        Ok(response
            .into_inner()
            .results
            .into_iter()
            .map(|r| r.error.map_or(Ok(r.stored), |e| Err(e.into())))
            .collect())
    }

    /// Removes many keys in one call; one result (held a value or not) per key, in order.
    pub async fn delete_many<I, K>(&self, keys: I) -> Result<Vec<Result<bool, KeyError>>, Error>
    where
        I: IntoIterator<Item = K>,
        K: Into<Vec<u8>>,
    {
        let message = proto::DeleteManyRequest {
            keys: keys.into_iter().map(Into::into).collect(),
        };
        let response = self
            .unary(Retry::OnUnavailable, message, |ch, r| async move {
                CacheClient::new(ch).delete_many(r).await
            })
            .await?;
        Ok(response
            .into_inner()
            .results
            .into_iter()
            .map(|r| r.error.map_or(Ok(r.deleted), |e| Err(e.into())))
            .collect())
    }
}
