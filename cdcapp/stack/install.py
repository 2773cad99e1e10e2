"""Install what the stack runs when it is missing: Debian packages, then the Maven-resolved jars."""

from __future__ import annotations

import os
import shutil
import subprocess
import xml.etree.ElementTree as ET
from contextlib import contextmanager
from pathlib import Path

from cdcapp.stack.base import DEBEZIUM_DIR, Echo, StackError
from cdcapp.stack.postgres import PG_BIN

# Debian package -> a file it installs that the stack runs.
APT_PACKAGES = {
    "postgresql": str(PG_BIN / "postgres"),
    "mariadb-server": "mariadbd",
    "clickhouse-server": "clickhouse-server",
    "clickhouse-client": "clickhouse-client",
    "openjdk-17-jre-headless": "java",
    "prometheus": "prometheus",
}
MAVEN_PACKAGE = ("maven", "mvn")
POLICY_RC_D = Path("/usr/sbin/policy-rc.d")
LIB_DIR = DEBEZIUM_DIR / "lib"


def _found(binary: str) -> bool:
    if binary.startswith("/"):
        return Path(binary).exists()
    return shutil.which(binary, path=os.environ.get("PATH", "") + ":/usr/sbin:/sbin") is not None


@contextmanager
def _no_service_starts():
    """Keep package scripts from starting system instances on the default ports.

    The standard Debian hook: invoke-rc.d asks policy-rc.d, and exit 101 means "not allowed".
    An existing hook is left as it is.
    """
    if POLICY_RC_D.exists():
        yield
        return
    POLICY_RC_D.write_text("#!/bin/sh\n# Written by cdcapp stack up while installing packages.\nexit 101\n")
    POLICY_RC_D.chmod(0o755)
    try:
        yield
    finally:
        POLICY_RC_D.unlink(missing_ok=True)


def apt_install(packages: list[str], echo: Echo) -> None:
    echo(f"installing Debian packages: {' '.join(packages)} (apt-get update, apt-get install)")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    with _no_service_starts():
        for cmd in (["apt-get", "update"], ["apt-get", "install", "-y", "--no-install-recommends", *packages]):
            done = subprocess.run(cmd, env=env, capture_output=True, text=True)
            if done.returncode:
                raise StackError(f"{' '.join(cmd)} failed:\n{done.stdout[-3000:]}{done.stderr[-3000:]}")


def pom_versions() -> dict[str, str]:
    ns = {"m": "http://maven.apache.org/POM/4.0.0"}
    props = ET.parse(DEBEZIUM_DIR / "pom.xml").getroot().find("m:properties", ns)
    return {el.tag.split("}")[1]: (el.text or "") for el in props}


def required_jars() -> list[Path]:
    v = pom_versions()
    kafka, dbz = v["kafka.version"], v["debezium.version"]
    lib = LIB_DIR / "kafka"
    return [
        lib / f"kafka_2.13-{kafka}.jar",
        lib / f"kafka-storage-{kafka}.jar",
        lib / f"connect-runtime-{kafka}.jar",
        lib / f"connect-json-{kafka}.jar",
        lib / f"connect-transforms-{kafka}.jar",
        lib / f"log4j-core-{v['log4j.version']}.jar",
        *(LIB_DIR / "plugins" / f"debezium-connector-{s}" / f"debezium-connector-{s}-{dbz}.jar"
          for s in ("postgres", "mariadb")),
        jmx_exporter_jar(),
    ]


def jmx_exporter_jar() -> Path:
    return LIB_DIR / "agents" / f"jmx_prometheus_javaagent-{pom_versions()['jmx.exporter.version']}.jar"


def ensure_installed(echo: Echo) -> None:
    missing_jars = [p for p in required_jars() if not p.exists()]
    packages = [pkg for pkg, binary in APT_PACKAGES.items() if not _found(binary)]
    if missing_jars and not _found(MAVEN_PACKAGE[1]):
        packages.append(MAVEN_PACKAGE[0])
    if packages:
        apt_install(packages, echo)
    if missing_jars:
        echo(f"resolving Kafka {pom_versions()['kafka.version']} and Debezium connectors from Maven "
             f"Central into {LIB_DIR} (mvn -q -f {DEBEZIUM_DIR / 'pom.xml'} package)")
        # Jars of another version left in place would end up on the same classpath.
        shutil.rmtree(LIB_DIR, ignore_errors=True)
        done = subprocess.run(["mvn", "-q", "-B", "-f", str(DEBEZIUM_DIR / "pom.xml"), "package"],
                              capture_output=True, text=True)
        still = [p for p in required_jars() if not p.exists()]
        if done.returncode or still:
            raise StackError(f"maven resolution failed (missing {still}):\n{done.stdout[-5000:]}{done.stderr[-2000:]}")
