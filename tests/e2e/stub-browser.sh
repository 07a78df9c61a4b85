#!/bin/sh
# Stands in for the default browser: records each URL it is asked to open.
printf '%s\n' "$1" >> "${ALERT_INBOX_E2E_OPENED:?ALERT_INBOX_E2E_OPENED is not set}"
