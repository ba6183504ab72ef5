@echo off
rem ===========================================================================
rem set-store-limit.cmd GB | undo
rem
rem Raises the size limit of new-sbs's mailbox store before mailboxes move
rem into it. Exchange 2003 SP2 Standard (the edition in SBS 2003) limits a
rem store to 18 GB by default; the registry value "Database Size Limit in Gb"
rem (decimal, per store, under MSExchangeIS\<server>\Private-<objectGUID of
rem the store>) raises it up to 75 GB. The value is read when the store
rem mounts, so the Information Store service is restarted here, at night,
rem before any user has a mailbox on new-sbs. (Exchange team blog,
rem 2005-09-14, "More details on Standard DB limit size increase in
rem Exchange 2003 SP2".)
rem Services that depend on the Information Store and ran before the restart
rem are started again afterwards.
rem "undo" (the step's rollback) removes the value and restarts the store:
rem back to the 18 GB default.
rem ===========================================================================
setlocal EnableDelayedExpansion
set BASE=HKLM\SYSTEM\CurrentControlSet\Services\MSExchangeIS\%COMPUTERNAME%
set STORE=
for /f "delims=" %%k in ('reg query "%BASE%" ^| findstr /i /c:"Private-"') do set "STORE=%%k"
if not defined STORE (
    echo No mailbox store key Private-* under %BASE%: is Exchange 2003 installed? 1>&2
    exit /b 1
)
echo Mailbox store key: !STORE!
if /i "%~1"=="undo" (
    reg delete "!STORE!" /v "Database Size Limit in Gb" /f
) else (
    if "%~1"=="" (
        echo usage: set-store-limit.cmd GB ^| undo 1>&2
        exit /b 2
    )
    reg add "!STORE!" /v "Database Size Limit in Gb" /t REG_DWORD /d %~1 /f
)
if errorlevel 1 exit /b 1

rem Remember which dependents run, restart the store, start them again.
set RESTART=
for /f "tokens=2" %%s in ('sc enumdepend MSExchangeIS ^| findstr /b /c:"SERVICE_NAME:"') do (
    sc query %%s | findstr /c:"RUNNING" >nul && set "RESTART=!RESTART! %%s"
)
net stop MSExchangeIS /y
net start MSExchangeIS
if errorlevel 1 exit /b 1
for %%s in (!RESTART!) do net start %%s
exit /b 0
