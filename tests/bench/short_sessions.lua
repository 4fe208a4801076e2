-- Many short sessions, as a web application without a connection pool makes them: each
-- event connects (with the benchmark's database), runs one point select, and disconnects.
-- sysbench's transactions/s are sessions/s. Used by sysbench_compare.sh (WORKLOAD=short_sessions).
sysbench.cmdline.options = {
   table_size = {"Rows in the table", 10000},
   tables = {"Number of tables", 1},
}
function thread_init()
   drv = sysbench.sql.driver()
end
function event()
   local con = drv:connect()
   con:query(string.format("SELECT c FROM sbtest%d WHERE id = %d", sysbench.rand.uniform(1, sysbench.opt.tables), sysbench.rand.uniform(1, sysbench.opt.table_size)))
   con:disconnect()
end
