@echo off
rem ===========================================================================
rem Moves the DHCP service to new-sbs (runs after the operator reviewed
rem C:\mig\dhcp\dhcp-new.txt and old-sbs's DHCP service was stopped):
rem imports the scopes, options and reservations, turns on conflict detection
rem (the leases themselves are not moved, so new-sbs pings an address twice
rem before handing it out), authorizes new-sbs in Active Directory and
rem removes old-sbs's authorization.
rem
rem Fails on the first error: a netsh exec that reports an error stops the
rem step (netsh exec stops at the first failing command, so a partial import
rem is possible: the rollback removes it). Afterwards the configuration is
rem dumped again and compared with dhcp-new.txt: every reservation, option
rem value, address range and exclusion of the reviewed file must be in it.
rem
rem Runs in the Runner-Migration task, like every step that writes to the
rem directory on behalf of the operator (authorizing a DHCP server needs an
rem enterprise administrator's credentials).
rem   (no argument)  hands itself to the task and waits.
rem   verify         the comparison alone (the step's check, also run in the
rem                  task: it reads the authorizations in the directory).
rem   undo           (the step's rollback) authorizes old-sbs again, deletes the
rem                  imported scope and stops and disables the DHCP service on
rem                  new-sbs; the rollback of dhcp-stop-old then starts
rem                  old-sbs's service again.
rem The scope, the servers' names and addresses and the domain come from
rem C:\mig\bin\customer.cmd (the step customer-settings).
rem ===========================================================================
setlocal
if not exist C:\mig\bin\customer.cmd (
    echo C:\mig\bin\customer.cmd is missing: run the step customer-settings first. 1>&2
    exit /b 1
)
call C:\mig\bin\customer.cmd
set WORK=C:\mig\dhcp
set SCOPE=%MIG_SCOPE%
set NEW_FQDN=%MIG_NEW%.%MIG_DOMAIN%
set OLD_FQDN=%MIG_OLD%.%MIG_DOMAIN%
if /i "%~1"=="in-task" goto work
if /i "%~1"=="undo" goto undo
if /i "%~1"=="verify" goto verify
call C:\mig\bin\job.cmd import-dhcp "%~f0" in-task
exit /b %errorlevel%

:work
rem SBS Setup or the Connect to the Internet wizard may have created a scope
rem already; dhcp-review has the operator delete it. Importing over it would
rem fail half-way, so refuse before changing anything.
netsh dhcp server show scope | findstr /c:"%SCOPE%" >nul
if not errorlevel 1 (
    echo Scope %SCOPE% already exists on new-sbs: see the step dhcp-review. 1>&2
    exit /b 1
)
sc config dhcpserver start= auto
if errorlevel 1 exit /b 1
net start dhcpserver
netsh exec "%WORK%\dhcp-new.txt" > "%WORK%\import.log" 2>&1
set RC=%errorlevel%
type "%WORK%\import.log"
if not "%RC%"=="0" (
    echo netsh exec failed with exit code %RC%: the import is incomplete. 1>&2
    exit /b 1
)
rem netsh prints errors without always setting the exit code.
findstr /i /c:"error" /c:"not found" /c:"failed" "%WORK%\import.log" >nul
if not errorlevel 1 (
    echo netsh exec reported an error: see %WORK%\import.log. 1>&2
    exit /b 1
)
netsh dhcp server set detectconflictretry 2
if errorlevel 1 exit /b 1
netsh dhcp add server %NEW_FQDN% %MIG_NEW_IP%
if errorlevel 1 exit /b 1
netsh dhcp delete server %OLD_FQDN% %MIG_OLD_IP%
rem The service reads its authorization when it starts.
net stop dhcpserver
net start dhcpserver
if errorlevel 1 exit /b 1
netsh dhcp show server
goto verify

:verify
rem Every reservation, option value, range and exclusion line of the
rem reviewed file must be in a fresh dump of new-sbs. Lines are compared
rem without their "Dhcp Server <name or address>" prefix, case-insensitively.
rem Verify in rehearsal: Windows Server 2003 dumps these lines in the same
rem form as the reviewed file (any difference is listed as MISSING).
netsh dhcp server dump > "%WORK%\dhcp-imported.txt"
if errorlevel 1 exit /b 1
powershell -NoProfile -NonInteractive -Command "$norm = { $_.Trim() -replace '^Dhcp Server \S+ ', '' }; $want = @(Get-Content 'C:\mig\dhcp\dhcp-new.txt' | Where-Object { $_ -match '(?i)(add reservedip|set optionvalue|add iprange|add excluderange)' } | ForEach-Object $norm); $have = @(Get-Content 'C:\mig\dhcp\dhcp-imported.txt' | ForEach-Object $norm); $missing = @($want | Where-Object { $have -notcontains $_ }); $missing | ForEach-Object { Write-Output ('MISSING ' + $_) }; Write-Output ([string]$want.Count + ' lines compared, ' + $missing.Count + ' missing'); if ($want.Count -eq 0 -or $missing.Count -gt 0) { exit 1 } else { exit 0 }"
if errorlevel 1 exit /b 1
netsh dhcp show server | findstr /i /c:"%NEW_FQDN%" >nul
if errorlevel 1 (
    echo %NEW_FQDN% is not authorized in Active Directory. 1>&2
    exit /b 1
)
exit /b 0

:undo
netsh dhcp add server %OLD_FQDN% %MIG_OLD_IP%
netsh dhcp delete server %NEW_FQDN% %MIG_NEW_IP%
netsh dhcp server delete scope %SCOPE% DHCPFULLFORCE
net stop dhcpserver
sc config dhcpserver start= disabled
sc query dhcpserver | findstr /c:"STOPPED" >nul
exit /b %errorlevel%
