select
    run_id,
    command,
    params,
    started_at,
    finished_at,
    status,
    version
from {{ source('lake', 'runs') }}
