"""litemq's benchmarks. ``python -m bench`` compares litemq with raw sqlite3, persist-queue, litequeue and RabbitMQ
on the same workloads (see bench/command.py), and with ``--engine postgresql`` litemq on a server with raw psycopg,
pgqueuer and procrastinate; the scripts beside it (hot_path.py, facade_speed.py,
wakeup_latency.py, crash_detection.py) each measure one thing and run on their own."""
