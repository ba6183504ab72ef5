@echo off
rem ===========================================================================
rem old-sbs.cmd ACTION: everything the playbook does to old-sbs (Windows 2000,
rem no WinRM, no PowerShell) is done from new-sbs, against old-sbs remotely.
rem Installed as C:\mig\bin\old-sbs.cmd on new-sbs and always run through
rem job.cmd, i.e. in the scheduled task Runner-Migration, whose stored
rem credentials reach old-sbs (a WinRM session on new-sbs cannot: the "double
rem hop", see job.cmd). Every tool used here is on new-sbs (Windows Server
rem 2003 SP2 with its Support Tools) and talks to old-sbs over RPC/SMB:
rem dcdiag /s:, repadmin, sc \\old-sbs, reg \\old-sbs, netsh dhcp server
rem \\old-sbs, wmic /node:old-sbs. The server's name and both addresses come
rem from C:\mig\bin\customer.cmd (the step customer-settings).
rem
rem   health          AD, replication, Exchange 2000 services and free disk of
rem                   old-sbs (read-only). Exit 0 only if everything is fine.
rem   inventory       copies the inventory written at old-sbs's console
rem                   (C:\mig\inventory) to C:\mig\inventory on new-sbs and
rem                   adds old-sbs's share definitions as reg query output.
rem   dns-order       old-sbs asks new-sbs first, itself second, for DNS.
rem   dns-order-check exit 0 when that is so.
rem   dns-order-undo  old-sbs asks only itself again.
rem   dhcp-dump       netsh dhcp server \\old-sbs dump > C:\mig\dhcp\dhcp-old.txt
rem   dhcp-stop       stops old-sbs's DHCP service and disables it.
rem   dhcp-stopped    exit 0 when it is stopped and disabled.
rem   dhcp-start      enables and starts it again (rollback of dhcp-stop).
rem ===========================================================================
setlocal
if not exist C:\mig\bin\customer.cmd (
    echo C:\mig\bin\customer.cmd is missing: run the step customer-settings first. 1>&2
    exit /b 1
)
call C:\mig\bin\customer.cmd
set OLD=%MIG_OLD%
set OLD_IP=%MIG_OLD_IP%
set NEW_IP=%MIG_NEW_IP%
set WORK=C:\mig
if /i "%~1"=="health" goto health
if /i "%~1"=="inventory" goto inventory
if /i "%~1"=="dns-order" goto dns_order
if /i "%~1"=="dns-order-check" goto dns_order_check
if /i "%~1"=="dns-order-undo" goto dns_order_undo
if /i "%~1"=="dhcp-dump" goto dhcp_dump
if /i "%~1"=="dhcp-stop" goto dhcp_stop
if /i "%~1"=="dhcp-stopped" goto dhcp_stopped
if /i "%~1"=="dhcp-start" goto dhcp_start
echo usage: old-sbs.cmd health^|inventory^|dns-order^|dns-order-check^|dns-order-undo^|dhcp-dump^|dhcp-stop^|dhcp-stopped^|dhcp-start 1>&2
exit /b 2

:health
set BAD=0
if not exist "%WORK%\logs" mkdir "%WORK%\logs"
rem dcdiag of Windows Server 2003 SP2 against the Windows 2000 DC. The
rem system log test fails on any error event of the last hour, which says
rem nothing about the directory: it is left out of the verdict.
rem Verify in rehearsal: which tests dcdiag /c of Windows Server 2003 SP2
rem fails against a healthy Windows 2000 DC (e.g. the DNS test); exclude
rem only those, by name, as systemlog is excluded here.
dcdiag /s:%OLD% /c /v > "%WORK%\logs\dcdiag-old.txt" 2>&1
findstr /i /c:"failed test" "%WORK%\logs\dcdiag-old.txt" | findstr /i /v /c:"test systemlog"
if not errorlevel 1 (
    echo dcdiag /s:%OLD% reports failed tests: see %WORK%\logs\dcdiag-old.txt 1>&2
    set BAD=1
)
repadmin /showrepl %OLD% > "%WORK%\logs\repadmin-old.txt" 2>&1
type "%WORK%\logs\repadmin-old.txt"
findstr /i /c:"failed" /c:"error" "%WORK%\logs\repadmin-old.txt" >nul
if not errorlevel 1 (
    echo repadmin /showrepl %OLD% reports errors. 1>&2
    set BAD=1
)
for %%S in (MSExchangeIS MSExchangeSA MSExchangeMTA SMTPSVC) do (
    sc \\%OLD% query %%S | findstr /c:"RUNNING" >nul
    if errorlevel 1 (
        echo Exchange service %%S is not running on %OLD%. 1>&2
        set BAD=1
    ) else (
        echo %%S running on %OLD%
    )
)
rem At least 1 GB free on every fixed disk: Exchange 2000 dismounts its
rem stores when the log disk fills, and only a full online backup purges
rem the logs.
powershell -NoProfile -NonInteractive -Command "$bad = 0; Get-WmiObject Win32_LogicalDisk -ComputerName %OLD% -Filter 'DriveType=3' | ForEach-Object { Write-Output ($_.DeviceID + ' ' + [math]::Round($_.FreeSpace / 1GB, 1) + ' GB free'); if ($_.FreeSpace -lt 1GB) { $bad = 1 } }; exit $bad"
if errorlevel 1 (
    echo A disk of %OLD% has less than 1 GB free. 1>&2
    set BAD=1
)
exit /b %BAD%

:inventory
if not exist "%WORK%\inventory" mkdir "%WORK%\inventory"
xcopy "\\%OLD%\C$\mig\inventory\*" "%WORK%\inventory\" /e /k /h /y
if errorlevel 1 exit /b 1
reg query "\\%OLD%\HKLM\SYSTEM\CurrentControlSet\Services\LanmanServer\Shares" /s > "%WORK%\inventory\shares-reg-query.txt"
if errorlevel 1 exit /b 1
for %%F in (shares.reg acl.txt users.csv store-sizes.txt shares-reg-query.txt) do (
    if not exist "%WORK%\inventory\%%F" (
        echo %WORK%\inventory\%%F is missing: repeat the step inventory-old at old-sbs's console. 1>&2
        exit /b 1
    )
)
type "%WORK%\inventory\store-sizes.txt"
exit /b 0

:dns_order
wmic /node:%OLD% nicconfig where "IPEnabled=TRUE" call SetDNSServerSearchOrder ("%NEW_IP%","%OLD_IP%")
goto dns_order_check

:dns_order_check
wmic /node:%OLD% nicconfig where "IPEnabled=TRUE" get DNSServerSearchOrder
wmic /node:%OLD% nicconfig where "IPEnabled=TRUE" get DNSServerSearchOrder | findstr /r /c:"^{.%NEW_IP:.=\.%., .%OLD_IP:.=\.%.}" >nul
exit /b %errorlevel%

:dns_order_undo
wmic /node:%OLD% nicconfig where "IPEnabled=TRUE" call SetDNSServerSearchOrder ("%OLD_IP%")
exit /b %errorlevel%

:dhcp_dump
rem Windows 2000 has no "netsh dhcp server export" (KB 885687): the dump is
rem the complete configuration as netsh commands, read here over RPC.
if not exist "%WORK%\dhcp" mkdir "%WORK%\dhcp"
netsh dhcp server \\%OLD% dump > "%WORK%\dhcp\dhcp-old.txt"
if errorlevel 1 exit /b 1
type "%WORK%\dhcp\dhcp-old.txt"
findstr /i /c:"add scope" "%WORK%\dhcp\dhcp-old.txt" >nul
exit /b %errorlevel%

:dhcp_stop
sc \\%OLD% config DHCPServer start= disabled
if errorlevel 1 exit /b 1
sc \\%OLD% query DHCPServer | findstr /c:"STOPPED" >nul
if errorlevel 1 sc \\%OLD% stop DHCPServer
goto dhcp_stopped

:dhcp_stopped
rem The stop takes a few seconds: look up to six times, 5 s apart.
for /l %%N in (1,1,6) do (
    sc \\%OLD% query DHCPServer | findstr /c:"STOPPED" >nul
    if not errorlevel 1 goto dhcp_stopped_disabled
    ping -n 6 127.0.0.1 >nul
)
echo The DHCP service of %OLD% is still running. 1>&2
exit /b 1
:dhcp_stopped_disabled
sc \\%OLD% qc DHCPServer | findstr /c:"DISABLED" >nul
if errorlevel 1 (
    echo The DHCP service of %OLD% is stopped but not disabled. 1>&2
    exit /b 1
)
echo The DHCP service of %OLD% is stopped and disabled.
exit /b 0

:dhcp_start
sc \\%OLD% config DHCPServer start= auto
if errorlevel 1 exit /b 1
sc \\%OLD% start DHCPServer
sc \\%OLD% query DHCPServer | findstr /c:"RUNNING" /c:"START_PENDING" >nul
exit /b %errorlevel%
