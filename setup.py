from setuptools import find_packages, setup

setup(
    name="thermostat_ctrl",
    version="0.1.0",
    description=(
        "Sinara Thermostat (TEC controller) for physics labs: asyncio driver, "
        "device simulator, ARTIQ controller and a Grafana/Prometheus HTTP bridge"
    ),
    long_description=open("README.md", encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    license="LGPLv3+",
    python_requires=">=3.10",
    packages=find_packages(include=["thermostat_ctrl", "thermostat_ctrl.*"]),
    # The live view's page and the vendored uPlot: served as they are, no build step.
    package_data={"thermostat_ctrl.bridge.web": ["static/*.html", "static/*.js", "static/*.css",
                                                 "static/uplot/*"]},
    install_requires=[
        "numpy>=1.25",
        "async-timeout>=4; python_version < '3.11'",  # asyncio.timeout before 3.11
        "scipy>=1.10",  # least squares of the autotune's model fit
        "fastapi>=0.110",
        "uvicorn>=0.27",
        "httptools>=0.6",  # uvicorn's fast HTTP parser (h11, pure Python, otherwise)
        "pydantic>=2",
        "prometheus_client>=0.17",
        "isal>=1.6",  # fast gzip of the HTTP answers
        "tomli>=1.1; python_version < '3.11'",  # TOML configuration on Python 3.10
        "rich>=13",  # progress bars and tables of the command lines
        "httpx>=0.25",  # the InfluxDB / VictoriaMetrics sinks
        "pyarrow>=14",  # fast parsing of whole CSV files (history caches, cold queries)
        "sse-starlette>=2.1",  # the live view's Server-Sent Events
        "fastapi-offline>=1.7",  # /docs and /redoc without a CDN
        "apprise>=1.6",  # alarm notifications: mail, webhooks, chat
        "allantools>=2019.9",  # Allan deviation of the stability figures
    ],
    extras_require={
        "test": [
            "pytest>=7",
            "pytest-timeout>=2",
            "pytest-asyncio>=0.23",
            "hypothesis>=6",
            "pyyaml>=5",
            "schemathesis>=4,<5",
            "playwright>=1.40",
            "aiosmtpd>=1.4",  # a real SMTP server receiving the alarm mails
        ],
        "artiq": ["sipyco @ git+https://github.com/m-labs/sipyco"],
    },
    entry_points={
        "console_scripts": [
            "thermostat_sim = thermostat_ctrl.simulator.cli:main",
            "aqctl_thermostat = thermostat_ctrl.aqctl_thermostat:main",
            "thermostat_bridge = thermostat_ctrl.bridge.cli:main",
            "thermostat_ctrl = thermostat_ctrl.cli:main",
        ],
    },
)
