//! A `Read` over a byte slice that hands out at most `max_read` bytes per
//! call (a slow pipe, when small) and counts the bytes it has handed out.

pub struct SlowRead<'a> {
    data: &'a [u8],
    max_read: usize,
    /// Bytes handed out so far.
    pub pulled: usize,
}

impl<'a> SlowRead<'a> {
    pub fn new(data: &'a [u8], max_read: usize) -> Self {
        Self {
            data,
            max_read,
            pulled: 0,
        }
    }
}

impl std::io::Read for SlowRead<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let rest = &self.data[self.pulled..];
        let n = rest.len().min(buf.len()).min(self.max_read);
        buf[..n].copy_from_slice(&rest[..n]);
        self.pulled += n;
        Ok(n)
    }
}
