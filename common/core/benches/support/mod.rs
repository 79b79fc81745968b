//! What the benchmark programs share.

/// VmHWM of this process (Linux), e.g. `41236 kB`.
pub fn peak_memory() -> Option<String> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    status.lines().find_map(|line| line.strip_prefix("VmHWM:")).map(|value| value.trim().to_string())
}
