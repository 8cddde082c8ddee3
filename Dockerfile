# waiter_service: the waiter as a CloudFlow asynchronous SOAP service.
#   docker build -t waiter-service .
#   docker run --rm -p 8080:8080 --env-file waiter.env waiter-service
FROM python:3.11-slim-bookworm

# tini reaps orphaned grandchildren of aborted runs (PID 1 duty); setsid and
# env (util-linux, coreutils) are part of the base image.
RUN apt-get update \
    && apt-get install -y --no-install-recommends tini \
    && rm -rf /var/lib/apt/lists/*

RUN useradd --system --uid 10001 --create-home --home-dir /var/lib/waiter waiter

WORKDIR /src
COPY . /src
# Install, then build Twisted's plugin cache while site-packages is writable.
RUN pip install --no-cache-dir . \
    && python -c "from twisted.plugin import IPlugin, getPlugins; list(getPlugins(IPlugin))" \
    && twistd --help | grep -q " waiter "

ENV WAITER_LOG_FOLDER=/var/lib/waiter/runs
USER waiter
WORKDIR /var/lib/waiter
EXPOSE 8080

# <context-root>/health without curl (and never through a proxy), the context
# root read as the server reads it: exit 1 on no answer within 3 s, on any
# code but 200 (503: the work folder cannot be written) or a status but "ok".
# A CMD that listens elsewhere: set WAITER_HEALTH_PORT or WAITER_HEALTH_URL.
HEALTHCHECK --interval=30s --timeout=5s --start-period=15s --retries=3 \
    CMD ["python", "-m", "waiter_service.ops.healthcheck"]

ENTRYPOINT ["/usr/bin/tini", "--"]
CMD ["twistd", "-n", "--pidfile=", "waiter", "--listen", "tcp:8080"]
