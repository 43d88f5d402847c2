pub fn run(_a: &std::path::Path, _r: usize, _s: u64) -> anyhow::Result<()> { Ok(()) }
