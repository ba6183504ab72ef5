@echo off
rem ===========================================================================
rem Moves the DHCP service to new-sbs (runs after the operator reviewed
rem C:\mig\dhcp\dhcp-new.txt and old-sbs's DHCP service was stopped):
rem imports the scopes, options and reservations, turns on conflict detection
rem (the leases themselves are not moved, so new-sbs pings an address twice
rem before handing it out), authorizes new-sbs in Active Directory and
rem removes old-sbs's authorization.
rem Runs in the ACME-Migration task, like every step that writes to the
rem directory on behalf of the operator.
rem "undo" (the step's rollback) authorizes old-sbs again and stops and
rem disables the DHCP service on new-sbs; the rollback of dhcp-stop-old then
rem starts old-sbs's service again.
rem ===========================================================================
setlocal
set WORK=C:\mig\dhcp
set SCOPE=192.168.16.0
if /i "%~1"=="in-task" goto work
if /i "%~1"=="undo" goto undo
call C:\mig\bin\job.cmd import-dhcp "%~f0" in-task
exit /b %errorlevel%

:work
sc config dhcpserver start= auto
net start dhcpserver
netsh exec "%WORK%\dhcp-new.txt"
echo netsh exec exited with code %errorlevel%
netsh dhcp server set detectconflictretry 2
netsh dhcp add server new-sbs.acme.local 192.168.16.3
netsh dhcp delete server old-sbs.acme.local 192.168.16.2
rem The service reads its authorization when it starts.
net stop dhcpserver
net start dhcpserver
netsh dhcp show server
netsh dhcp server show scope
netsh dhcp server show scope | findstr /c:"%SCOPE%" >nul
if errorlevel 1 (
    echo Scope %SCOPE% is missing on new-sbs after the import. 1>&2
    exit /b 1
)
exit /b 0

:undo
netsh dhcp add server old-sbs.acme.local 192.168.16.2
netsh dhcp delete server new-sbs.acme.local 192.168.16.3
net stop dhcpserver
sc config dhcpserver start= disabled
sc query dhcpserver | findstr /c:"STOPPED" >nul
exit /b %errorlevel%
