"""`make demo`: the whole loop on the embedded synthetic belt data, on this machine.

Everything lives under ./demo (state, frames, Label Studio data); rerunning reuses what exists.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
DEMO = REPO / "demo"
FRAMES = DEMO / "frames"
BELTCURATE = str(REPO / ".venv" / "bin" / "beltcurate")
DEMO_FRAMES = int(os.environ.get("DEMO_FRAMES", "600"))


def sh(*args: str, json_out: bool = True) -> dict:
    env = {**os.environ, "BELTCURATE_CONFIG": str(DEMO / "beltcurate.toml"), "OMP_WAIT_POLICY": "PASSIVE"}
    cmd = [BELTCURATE, *args] + (["--json"] if json_out else [])
    print("$ beltcurate " + " ".join(args), flush=True)
    done = subprocess.run(cmd, env=env, capture_output=True, text=True)
    if done.returncode != 0:
        sys.stderr.write(done.stderr)
        raise SystemExit(f"demo stopped: 'beltcurate {' '.join(args)}' exited {done.returncode}")
    return json.loads(done.stdout) if json_out and done.stdout.strip() else {}


def write_config() -> None:
    DEMO.mkdir(exist_ok=True)
    config = DEMO / "beltcurate.toml"
    if not config.exists():
        config.write_text('state_dir = "state"\n\n[select]\nbudget = 60\n')


def main() -> None:
    started = time.perf_counter()
    write_config()
    if not (FRAMES / "annotations.json").exists():
        synth = sh("synth", str(FRAMES), "--frames", str(DEMO_FRAMES), "--seed", "0", "--workers", "2")
        print(f"  {synth['frames']} frames, {synth['objects']} objects ({synth['frames_per_s']} frames/s)")
    ingest = sh("ingest", str(FRAMES / "images"), "--site-from-path")
    print(f"  {ingest['new']} new, {ingest['already_known']} already known, {ingest['quarantined']} quarantined")
    print(f"\ndemo finished in {time.perf_counter() - started:.0f} s; catalog: {DEMO / 'state' / 'catalog.sqlite'}")


if __name__ == "__main__":
    main()
