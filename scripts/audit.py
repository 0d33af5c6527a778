"""``make audit``: pip-audit over the lock files, honest about what it could check.

Exit status: 1 when a known vulnerability is found; 0 otherwise, including when the
vulnerability service could not be reached or had no data for the pinned versions. That case is
printed plainly ("NOT AUDITED"), so CI stays green on a machine without network access but
nobody mistakes it for a clean audit. ``make lock`` rewrites the lock files; the development
lock holds every runtime pin too, at the same version.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
LOCKS = (ROOT / "requirements.lock", ROOT / "requirements-dev.lock")
NETWORK_ERRORS = ("ConnectionError", "NameResolutionError", "Max retries exceeded", "timed out")


def main() -> int:
    """Run the audit; see the module docstring for the exit status."""
    # A pin starts a line; hashes, markers' continuations and comments are indented or "#".
    pins = {
        line.split()[0]
        for lock in LOCKS
        for line in lock.read_text().splitlines()
        if line[:1].isalnum()
    }
    with tempfile.TemporaryDirectory() as tmp:
        report = Path(tmp) / "audit.json"
        proc = subprocess.run(
            [
                sys.executable,
                "-m",
                "pip_audit",
                *(arg for lock in LOCKS for arg in ("-r", str(lock))),
                "--no-deps",
                "--disable-pip",
                "--progress-spinner",
                "off",
                "-f",
                "json",
                "-o",
                str(report),
            ],
            capture_output=True,
            text=True,
            timeout=900,
        )
        if not report.exists():
            if any(marker in proc.stderr for marker in NETWORK_ERRORS):
                print("audit: NOT AUDITED: the vulnerability service is unreachable from here.")
                print("audit: " + proc.stderr.strip().splitlines()[-1][:300])
                return 0
            print(proc.stderr, file=sys.stderr)
            return proc.returncode or 2
        doc = json.loads(report.read_text())
    deps = doc.get("dependencies", [])
    vulnerable = [d for d in deps if d.get("vulns")]
    skipped = [d for d in deps if d.get("skip_reason")]
    audited = len(deps) - len(skipped)
    for dep in vulnerable:
        for vuln in dep["vulns"]:
            fixes = ", ".join(vuln.get("fix_versions") or []) or "no fix yet"
            print(f"audit: VULNERABLE {dep['name']}=={dep['version']}: {vuln['id']} (fix: {fixes})")
    print(
        f"audit: {len(pins)} pinned, {audited} audited, {len(skipped)} could not be audited, "
        f"{len(vulnerable)} vulnerable"
    )
    if skipped:
        reason = skipped[0]["skip_reason"]
        print(
            f"audit: NOT AUDITED ({len(skipped)} packages): the service has no data for the pinned "
            f"versions here (e.g. {reason!r}); only package registries are reachable."
        )
    return 1 if vulnerable else 0


if __name__ == "__main__":
    sys.exit(main())
