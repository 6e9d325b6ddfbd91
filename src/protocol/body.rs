//! A request body read chunk by chunk, refused the moment it passes the limit.
//!
//! A client may send a body without a length (chunked) or of any size; reading it
//! whole before checking would let one request hold as much memory as it likes, and
//! a Worker's memory never shrinks. The shell copies each chunk in only after
//! [`BodyBuffer::room_for`] has agreed, so at most `limit` bytes are ever kept here.

use super::error::ExchangeError;

/// The body received so far, never more than `limit` bytes.
#[derive(Debug)]
pub struct BodyBuffer {
    received: Vec<u8>,
    limit: u64,
}

impl BodyBuffer {
    /// Starts a body that declared `declared` bytes (its `Content-Length`, if any):
    /// one declaring more than `limit` is refused before anything is read.
    pub fn new(declared: Option<u64>, limit: u64) -> Result<Self, ExchangeError> {
        if let Some(size) = declared.filter(|size| *size > limit) {
            return Err(ExchangeError::BodyTooLarge { size, limit });
        }
        Ok(Self {
            received: Vec::new(),
            limit,
        })
    }

    /// Room for the next chunk of `length` bytes, for the caller to copy it into;
    /// or, if the body would then pass the limit, the refusal (nothing is kept, and
    /// the size reported is what had arrived, this chunk included).
    pub fn room_for(&mut self, length: usize) -> Result<&mut [u8], ExchangeError> {
        let start = self.received.len();
        let size = (start as u64).saturating_add(length as u64);
        if size > self.limit {
            return Err(ExchangeError::BodyTooLarge {
                size,
                limit: self.limit,
            });
        }
        let end = start + length;
        if self.received.capacity() < end {
            // Doubling, as a `Vec` grows, but never past the limit: the capacity
            // is what the memory holds.
            let ceiling = usize::try_from(self.limit).unwrap_or(usize::MAX);
            let capacity = self
                .received
                .capacity()
                .saturating_mul(2)
                .max(end)
                .min(ceiling);
            self.received.reserve_exact(capacity - start);
        }
        self.received.resize(end, 0);
        Ok(&mut self.received[start..])
    }

    /// The whole body, once the stream has ended.
    pub fn into_bytes(self) -> Vec<u8> {
        self.received
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn push(body: &mut BodyBuffer, chunk: &[u8]) -> Result<(), ExchangeError> {
        body.room_for(chunk.len())?.copy_from_slice(chunk);
        Ok(())
    }

    #[test]
    fn chunks_up_to_the_limit_make_the_body() {
        let mut body = BodyBuffer::new(None, 6).unwrap();
        push(&mut body, b"abc").unwrap();
        push(&mut body, b"").unwrap();
        push(&mut body, b"def").unwrap();
        assert_eq!(body.into_bytes(), b"abcdef");
    }

    #[test]
    fn the_chunk_that_passes_the_limit_is_refused_and_not_kept() {
        let mut body = BodyBuffer::new(None, 5).unwrap();
        push(&mut body, b"abc").unwrap();
        let refusal = push(&mut body, b"def").unwrap_err();
        assert_eq!(refusal, ExchangeError::BodyTooLarge { size: 6, limit: 5 });
        assert_eq!(refusal.status(), 413);
        assert_eq!(
            refusal.text(),
            "Request body of size 6 larger than limit 5."
        );
        assert_eq!(body.received.len(), 3);
    }

    #[test]
    fn a_body_never_holds_more_than_the_limit_however_it_is_cut() {
        let limit = 1000;
        for chunk_size in [1, 7, 999, 1000, 1001, 64 * 1024] {
            let mut body = BodyBuffer::new(None, limit).unwrap();
            let chunk = vec![b'x'; chunk_size];
            let mut refused = None;
            for _ in 0..(4 * limit as usize / chunk_size + 2) {
                if let Err(error) = push(&mut body, &chunk) {
                    refused = Some(error);
                    break;
                }
                assert!(body.received.capacity() as u64 <= limit, "{chunk_size}");
            }
            assert!(
                matches!(refused, Some(ExchangeError::BodyTooLarge { size, .. }) if size > limit),
                "chunks of {chunk_size}: {refused:?}"
            );
            assert!(body.received.capacity() as u64 <= limit);
        }
    }

    #[test]
    fn a_declared_length_over_the_limit_is_refused_before_reading() {
        let refusal = BodyBuffer::new(Some(11), 10).unwrap_err();
        assert_eq!(
            refusal,
            ExchangeError::BodyTooLarge {
                size: 11,
                limit: 10
            }
        );
        assert!(BodyBuffer::new(Some(10), 10).is_ok());
    }
}
