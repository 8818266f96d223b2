"""The JVM the embedded Apache Kafka runs on: is one on PATH, and is it new enough?"""

from __future__ import annotations

import re
import shutil
import subprocess

MIN_JAVA = 17
"""Kafka 4.x brokers need Java 17 (3.9 ran on 11); one floor for both keeps it simple."""


def java_major(java: str = "java") -> int | None:
    """The JVM's feature version (8, 11, 17, ...), or None when there is no JVM."""
    path = shutil.which(java)
    if path is None:
        return None
    try:
        done = subprocess.run([path, "-version"], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return None
    # `openjdk version "17.0.15" 2025-04-15`, or "1.8.0_402" before Java 9.
    found = re.search(r'version "(\d+)(?:\.(\d+))?', done.stderr + done.stdout)
    if done.returncode != 0 or found is None:
        return None
    major = int(found.group(1))
    return int(found.group(2) or 0) if major == 1 else major


def java_available(java: str = "java") -> bool:
    """True when a JVM new enough for Kafka runs: the supervisor falls back to Tansu otherwise."""
    major = java_major(java)
    return major is not None and major >= MIN_JAVA
