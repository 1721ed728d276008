"""obs.procs: the CPU and memory figures the benchmarks print, read from /proc."""

from __future__ import annotations

import subprocess
import sys
import time

from clearcircle.obs.procs import cpu_seconds, cpu_seconds_of, machine_busy_seconds, rss_mb, tree

_SPIN = "import time\nend = time.process_time() + 0.6\nwhile time.process_time() < end: pass\ntime.sleep(30)"


def test_cpu_of_a_process_tree_counts_its_children_and_the_machine_counts_everyone() -> None:
    machine0 = machine_busy_seconds()
    # a parent that starts a child burning 0.6 s of CPU: the parent's tree holds the child's CPU
    parent = subprocess.Popen([sys.executable, "-c", f"import subprocess, sys\nsubprocess.run([sys.executable, "
                                                     f"'-c', {_SPIN!r}])"])
    try:
        deadline = time.monotonic() + 30
        while cpu_seconds(parent.pid) < 0.5 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert len(tree(parent.pid)) == 2
        assert cpu_seconds(parent.pid) >= 0.5
        assert cpu_seconds_of([parent.pid, parent.pid]) >= 1.0  # summed per listed process
        assert machine_busy_seconds() - machine0 >= 0.5
        assert rss_mb(parent.pid) > 1
    finally:
        for pid in reversed(tree(parent.pid)):
            subprocess.run(["kill", str(pid)], check=False)
        parent.wait(timeout=10)


def test_a_gone_process_counts_nothing() -> None:
    done = subprocess.run([sys.executable, "-c", "pass"], check=True)
    assert done.returncode == 0
    assert cpu_seconds(2**22 + 7) == 0 and rss_mb(2**22 + 7) == 0
