@echo off
rem ===========================================================================
rem Adds new-sbs's public store as a replica of every public folder of
rem old-sbs: first the system folders (Offline Address Book, Schedule+ Free
rem Busy, Organization Forms), then all top-level folders (KB 822895;
rem KB 307917). Uses pfmigrate.wsf from the Exchange 2003 Deployment Tools,
rem expected in C:\mig\exdeploy (see confirm-prerequisites).
rem Replication itself then runs in the background for hours: the step
rem verify-public-folders has the operator compare item counts in ESM.
rem Safe to run again: a folder that already has the replica is skipped.
rem Runs in the Runner-Migration task: pfmigrate talks to both servers,
rem whose names come from C:\mig\bin\customer.cmd (the step customer-settings).
rem "undo" (the step's rollback) removes the replicas from new-sbs again.
rem ===========================================================================
setlocal
if not exist C:\mig\bin\customer.cmd (
    echo C:\mig\bin\customer.cmd is missing: run the step customer-settings first. 1>&2
    exit /b 1
)
call C:\mig\bin\customer.cmd
set PFM=C:\mig\exdeploy\pfmigrate.wsf
if /i "%~1"=="in-task" goto work
if /i "%~1"=="undo" goto undo
call C:\mig\bin\job.cmd add-public-folder-replicas "%~f0" in-task
exit /b %errorlevel%

:work
if not exist "%PFM%" goto missing
cscript //nologo "%PFM%" /S:%MIG_OLD% /T:%MIG_NEW% /A /SF /N:1000
if errorlevel 1 exit /b 1
cscript //nologo "%PFM%" /S:%MIG_OLD% /T:%MIG_NEW% /A /N:1000
if errorlevel 1 exit /b 1
cscript //nologo "%PFM%" /S:%MIG_OLD% /T:%MIG_NEW% /R
exit /b %errorlevel%

:undo
if not exist "%PFM%" goto missing
cscript //nologo "%PFM%" /S:%MIG_NEW% /T:%MIG_OLD% /D
if errorlevel 1 exit /b 1
cscript //nologo "%PFM%" /S:%MIG_NEW% /T:%MIG_OLD% /D /SF
exit /b %errorlevel%

:missing
echo %PFM% is missing: copy the Exchange 2003 Deployment Tools to C:\mig\exdeploy. 1>&2
exit /b 1
