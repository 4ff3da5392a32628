SELECT service, path, status, response_flags, response_code_details
FROM exchanges WHERE status >= 500 ORDER BY start_time