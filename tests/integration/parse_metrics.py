#!/usr/bin/python3
# Parses ionsvc-ctl's metrics with the Prometheus project's own Python
# parsers (Debian's python3-prometheus-client), strictly: a file they
# reject exits 1 with their error. Prints the families as JSON:
#   { "<family>": { "type", "unit", "samples": [ [name, {labels}, value] ] } }
# usage: parse_metrics.py openmetrics|prometheus FILE
import json
import sys

from prometheus_client.openmetrics.parser import text_string_to_metric_families as parse_openmetrics
from prometheus_client.parser import text_string_to_metric_families as parse_prometheus


def main():
    kind, path = sys.argv[1], sys.argv[2]
    with open(path, encoding="utf-8") as file:
        text = file.read()
    parse = parse_openmetrics if kind == "openmetrics" else parse_prometheus
    try:
        families = {
            family.name: {
                "type": family.type,
                "unit": family.unit,
                "samples": [[s.name, s.labels, s.value] for s in family.samples],
            }
            for family in parse(text)
        }
    except Exception as error:  # the parsers raise ValueError and others
        print(f"parse_metrics: {kind}: {error}", file=sys.stderr)
        return 1
    json.dump(families, sys.stdout)
    return 0


if __name__ == "__main__":
    sys.exit(main())
