"""The naive design the benchmarks compare against: one Celery task per SMS (see ``app``)."""
