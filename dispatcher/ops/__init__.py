"""Operations: structured logs, health and metrics servers, the broker-side exporter."""
