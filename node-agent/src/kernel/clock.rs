//! The flows' tick counts as time. The flow programs stamp packets with
//! `jiffies_64` (a load, where reading a clock costs ~6 ns a packet); each
//! drain has the kernel read the tick count and CLOCK_MONOTONIC side by side
//! (the `clock_sample` raw tracepoint program, test-run, never attached; a
//! test run of it builds no packet) and converts with
//! the tick's length, the resolution of CLOCK_MONOTONIC_COARSE.

use std::{
    os::fd::{AsFd, AsRawFd},
    time::Duration,
};

use aya::{
    maps::{Array, MapData, MapError},
    programs::ProgramFd,
};
use osprey_abi::ClockSample;

use crate::kernel::test_run::test_run_raw_tracepoint;

#[derive(Debug, thiserror::Error)]
pub enum ClockError {
    #[error("cannot run the clock_sample program")]
    Run(#[source] std::io::Error),
    #[error("cannot read the CLOCK map")]
    Read(#[source] MapError),
    #[error("the kernel's tick length (the resolution of CLOCK_MONOTONIC_COARSE) is unknown")]
    Tick,
}

/// The kernel's tick length: `clock_getres(CLOCK_MONOTONIC_COARSE)`, which
/// is `TICK_NSEC` (1 s / HZ).
pub fn tick() -> Result<Duration, ClockError> {
    let mut res = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_getres writes into the timespec we own.
    let rc = unsafe { libc::clock_getres(libc::CLOCK_MONOTONIC_COARSE, &mut res) };
    let ns = res.tv_sec as u64 * 1_000_000_000 + res.tv_nsec as u64;
    if rc != 0 || ns == 0 || ns > 100_000_000 {
        return Err(ClockError::Tick);
    }
    Ok(Duration::from_nanos(ns))
}

pub struct KernelClock {
    program: ProgramFd,
    samples: Array<MapData, ClockSample>,
    tick_ns: u64,
    last: ClockSample,
}

impl KernelClock {
    /// Takes a first sample: an error here means flows could not be timed.
    /// `tick` is the kernel's tick length ([`tick`]).
    pub fn new(
        program: ProgramFd,
        samples: Array<MapData, ClockSample>,
        tick: Duration,
    ) -> Result<Self, ClockError> {
        let mut clock = Self {
            program,
            samples,
            tick_ns: tick.as_nanos() as u64,
            last: ClockSample::default(),
        };
        clock.refresh()?;
        Ok(clock)
    }

    /// Samples the kernel's clocks again. On an error the previous sample
    /// stays in use (ticks and CLOCK_MONOTONIC advance together, so it only
    /// grows older, not wrong).
    pub fn refresh(&mut self) -> Result<(), ClockError> {
        test_run_raw_tracepoint(self.program.as_fd().as_raw_fd()).map_err(ClockError::Run)?;
        self.last = self.samples.get(&0, 0).map_err(ClockError::Read)?;
        Ok(())
    }

    /// CLOCK_MONOTONIC (ns) at tick count `jiffies`, to within a tick; 0
    /// (never stamped) stays 0.
    pub fn mono_ns(&self, jiffies: u64) -> u64 {
        mono_ns(self.last, self.tick_ns, jiffies)
    }
}

fn mono_ns(sample: ClockSample, tick_ns: u64, jiffies: u64) -> u64 {
    if jiffies == 0 {
        return 0;
    }
    let ticks = i128::from(jiffies) - i128::from(sample.jiffies);
    (i128::from(sample.mono_ns) + ticks * i128::from(tick_ns)).max(1) as u64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ticks_convert_around_the_sample() {
        let sample = ClockSample {
            jiffies: 4_301_682_946,
            mono_ns: 27_162_720_154_037,
        };
        let tick = 4_000_000; // HZ=250
        assert_eq!(mono_ns(sample, tick, sample.jiffies), sample.mono_ns);
        assert_eq!(
            mono_ns(sample, tick, sample.jiffies - 250),
            sample.mono_ns - 1_000_000_000
        );
        assert_eq!(
            mono_ns(sample, tick, sample.jiffies + 3),
            sample.mono_ns + 12_000_000
        );
        assert_eq!(mono_ns(sample, tick, 0), 0, "never stamped");
    }

    #[test]
    fn the_tick_is_a_plausible_hz() {
        let hz = 1_000_000_000 / tick().unwrap().as_nanos();
        assert!((24..=1200).contains(&hz), "HZ {hz}");
    }
}
